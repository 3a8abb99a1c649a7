"""FCM HTTP v1 with a service account.

OAuth2: google-auth's service-account credentials do the JWT-bearer exchange (RFC 7523), its protocol
details and its error parsing. google-auth is synchronous, so the refresh runs in a worker thread
(`asyncio.to_thread`) behind a lock, over a small httpx-backed google-auth transport (no `requests`).
The token is cached until five minutes before it expires, measured on the injected clock. An answer 401
(our token was refused) drops the cached token, fetches a new one once and resends. Sends go over the push
transport (transport/: HTTP/2, HTTP/1.1 for hosts without it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import google.auth.transport
import httpx
import orjson
from google.oauth2 import service_account

from . import payloads
from .base import (
    NOT_CONFIGURED,
    Notification,
    Outcome,
    Provider,
    Result,
    Target,
    parse_retry_after,
    transport_failure,
)
from .transport import DEFAULT_TIMEOUT, Response, Transport, TransportError

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JSON = (b"content-type", b"application/json")
DEFAULT_URL = "https://fcm.googleapis.com"
REFRESH_MARGIN = 300.0
QUOTA_BACKOFF = 60.0  # FCM asks for at least a minute after QUOTA_EXCEEDED without Retry-After
DEAD_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
RETRY_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})


@dataclass(frozen=True, slots=True)
class FcmPrepared:
    tail: bytes  # the encoded message minus its opening brace: the token is spliced in per device


class _Response(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _Request(google.auth.transport.Request):
    """google-auth's transport interface on a synchronous httpx client (used from a worker thread)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        try:
            response = self._client.request(
                method, url, content=body, headers=headers, timeout=timeout or DEFAULT_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        return _Response(response)


def load_service_account(text: str) -> dict[str, Any]:
    info = orjson.loads(text)
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError("FCM credentials must be a service-account JSON key")
    return info


class FcmProvider(Provider):
    name = "fcm"

    def __init__(
        self,
        *,
        service_account_info: Mapping[str, Any] | None,
        project_id: str = "",
        base_url: str = "",
        token_url: str = "",
        clock: Callable[[], float],
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
        token_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces the one built from `timeout` (tests inject their own); `token_transport` is the
        httpx transport of the OAuth exchange."""
        self.clock = clock
        self.token_fetches = 0  # OAuth exchanges so far (tests and metrics read it)
        self._credentials: service_account.Credentials | None = None
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        info = dict(service_account_info or {})
        self.project_id = project_id or str(info.get("project_id", ""))
        missing = []
        if not info:
            missing.append("TIDINGS_FCM_CREDENTIALS_PATH or TIDINGS_FCM_CREDENTIALS")
        else:
            if token_url:
                info["token_uri"] = token_url
            try:
                from_info = service_account.Credentials.from_service_account_info
                self._credentials = from_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
            except (ValueError, KeyError) as exc:
                missing.append(f"a valid service-account key ({exc})")
        if not self.project_id:
            missing.append("TIDINGS_FCM_PROJECT_ID")
        self.missing = ", ".join(missing)
        base = (base_url or DEFAULT_URL).rstrip("/")
        self.send_url = f"{base}/v1/projects/{self.project_id}/messages:send"
        parts = urlsplit(self.send_url)
        self._origin, self._path = f"{parts.scheme}://{parts.netloc}", parts.path.encode()
        self._auth: tuple[str, list[tuple[bytes, bytes]]] = ("", [])
        self._oauth = _Request(httpx.Client(transport=token_transport, timeout=timeout))
        self.transport = transport or Transport(timeout=timeout, service="FCM")

    @property
    def configured(self) -> bool:
        return not self.missing

    def prepare(self, note: Notification) -> FcmPrepared:
        return FcmPrepared(orjson.dumps(payloads.fcm_message(note, self.clock()))[1:])

    async def _access_token(self, *, stale: str = "") -> str:
        if self._token and self._token != stale and self.clock() < self._expires_at - REFRESH_MARGIN:
            return self._token
        async with self._lock:  # one exchange at a time; the others wait and reuse its token
            if self._token and self._token != stale and self.clock() < self._expires_at - REFRESH_MARGIN:
                return self._token
            credentials = self._credentials
            assert credentials is not None
            await asyncio.to_thread(credentials.refresh, self._oauth)
            self.token_fetches += 1
            expiry = credentials.expiry or (
                dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)
            )
            lifetime = (expiry - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()
            self._token, self._expires_at = str(credentials.token), self.clock() + lifetime
            return self._token

    async def send(self, target: Target, prepared: FcmPrepared) -> Result:
        if not self.configured:
            return NOT_CONFIGURED
        body = b'{"message":{"token":' + orjson.dumps(target.token) + b"," + prepared.tail + b"}"
        stale = ""
        for _ in (1, 2):
            try:
                token = await self._access_token(stale=stale)
            except google.auth.exceptions.RefreshError as exc:
                outcome = Outcome.retry_later if getattr(exc, "retryable", False) else Outcome.credentials
                return Result(outcome, f"oauth: {exc}"[:300])
            except google.auth.exceptions.TransportError as exc:
                return Result(Outcome.retry_later, f"oauth: {exc}"[:300])
            if self._auth[0] != token:
                self._auth = (token, [JSON, (b"authorization", f"Bearer {token}".encode())])
            try:
                answer = await self.transport.request(self._origin, self._path, self._auth[1], body)
            except TransportError as exc:
                return transport_failure(exc)
            if answer.status != 401 or _error_code(answer.body) == "THIRD_PARTY_AUTH_ERROR":
                return self._classify(answer)
            stale = token  # our access token was refused: fetch a new one once
        return Result(Outcome.credentials, "UNAUTHENTICATED", 401)

    def _classify(self, answer: Response) -> Result:
        status = answer.status
        if status == 200:
            return Result(Outcome.delivered, status=200)
        code = _error_code(answer.body)
        message = _error_message(answer.body)
        retry_after = parse_retry_after(answer.header(b"retry-after"), self.clock())
        if code in DEAD_CODES:
            return Result(Outcome.dead_token, code, status)
        if code == "INVALID_ARGUMENT" and "token" in message.lower():
            return Result(Outcome.dead_token, f"INVALID_ARGUMENT: {message}"[:300], status)
        if code == "QUOTA_EXCEEDED" or status == 429:
            return Result(
                Outcome.retry_later, code or "RESOURCE_EXHAUSTED", status, retry_after or QUOTA_BACKOFF
            )
        if code in RETRY_CODES or status >= 500:
            return Result(Outcome.retry_later, code or f"HTTP {status}", status, retry_after)
        if code == "THIRD_PARTY_AUTH_ERROR" or status in (401, 403):
            return Result(Outcome.credentials, code or f"HTTP {status}", status)
        return Result(Outcome.rejected, f"{code or status}: {message}"[:300], status)

    async def aclose(self) -> None:
        await self.transport.aclose()
        self._oauth._client.close()


def _error(content: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(content: bytes) -> str:
    """The FcmError `details[].errorCode`, else the canonical `status`."""
    error = _error(content)
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status", ""))


def _error_message(content: bytes) -> str:
    return str(_error(content).get("message", ""))
