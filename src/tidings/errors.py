"""The exception hierarchy; foreign errors are translated into these at module boundaries.

TidingsError
├── ApiError             an HTTP answer: status, machine code, message, the offending field
├── AuthError            a token that cannot be trusted (→ 401)
├── BusUnavailable       the broker cannot take or carry events right now (→ 503)
└── ConfigError          (in config.py) configuration that cannot work
"""

from __future__ import annotations


class TidingsError(Exception):
    """Root of every error tidings raises on purpose."""


class ApiError(TidingsError):
    """An error answered to an HTTP client as `{"error": code, "message": message, "field": field}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.errors = errors

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message, "field": self.field}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class AuthError(TidingsError):
    """A credential that is missing, malformed, expired, revoked or signed by the wrong key."""

    def __init__(self, message: str, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class BusUnavailable(TidingsError):
    """The event bus cannot accept events now; callers answer 503 rather than accept and drop."""
