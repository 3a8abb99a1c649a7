"""A local FCM: the OAuth2 token endpoint (JWT-bearer grant) and HTTP v1 `messages:send`.

The sandbox owns a service account (an RSA key it made); `service_account_info()` is the JSON key a
developer points tidings at, with `token_uri` aimed at this sandbox. Errors are FCM v1's shape:
`{"error": {"code", "message", "status", "details": [{"@type": ".../google.firebase.fcm.v1.FcmError",
"errorCode"}]}}`. Rules (control.py) take the errorCode as `reason`; the status follows FCM's table.
`messages:send` is served over HTTP/2 (h2c) on `url`, as FCM is reached, and over HTTP/1.1 on `control_url`
with the token endpoint and the control API.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._server import SandboxServers, UvicornServer
from .control import SandboxState, control_routes
from .fcm_checks import MessageError, check_message
from .h2server import Answer, H2Server

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
STATUS_OF = {  # errorCode -> (HTTP status, canonical status)
    "UNSPECIFIED_ERROR": (500, "UNKNOWN"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
    "UNREGISTERED": (404, "NOT_FOUND"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED"),
}


JSON = {"content-type": "application/json"}


def fcm_error(error_code: str, message: str, retry_after: str | None = None, delay: float = 0.0) -> Answer:
    status, canonical = STATUS_OF.get(error_code, (500, "UNKNOWN"))
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": canonical,
            "details": [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}],
        }
    }
    headers = {**JSON, "retry-after": retry_after} if retry_after is not None else JSON
    return status, headers, orjson.dumps(body), delay


class FcmSandbox(SandboxServers):
    def __init__(
        self,
        *,
        project_id: str = "tidings-sandbox",
        key: rsa.RSAPrivateKey | None = None,
        clock: Callable[[], float] = time.time,
        token_lifetime: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        http1_port: int = 0,
    ) -> None:
        self.project_id = project_id
        self.state = SandboxState(clock)
        self.token_lifetime = token_lifetime
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = f"tidings@{project_id}.iam.gserviceaccount.com"
        self.tokens: dict[str, float] = {}  # access token -> expiry (sandbox clock)
        self.tokens_issued = 0
        self._sent = 0
        routes = [
            Route("/token", self._token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self._send_http1, methods=["POST"]),
            *control_routes(self.state),
        ]
        self._control = UvicornServer(Starlette(routes=routes), host=host, port=http1_port)
        self.h2 = H2Server(self._send_h2, self.state.pause, host=host, port=port)

    @property
    def control_url(self) -> str:
        """HTTP/1.1: the control API, the token endpoint, and `messages:send` again for HTTP/1.1 clients."""
        return self._control.url

    @property
    def token_url(self) -> str:
        return f"{self.control_url}/token"

    def service_account_info(self) -> dict[str, Any]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "sandbox",
            "private_key": pem.decode(),
            "client_email": self.client_email,
            "client_id": "1",
            "token_uri": self.token_url,
        }

    async def _token(self, request: Request) -> Response:
        # Parsed by hand: Starlette's form parser needs python-multipart for a two-field urlencoded body.
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != GRANT:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = self._check_assertion(str(form.get("assertion", "")))
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        token = "sbx." + secrets.token_urlsafe(24)
        self.tokens[token] = self.state.clock() + self.token_lifetime
        self.tokens_issued += 1
        self.state.record({"kind": "token", "iss": claims["iss"], "scope": claims["scope"]})
        body = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return JSONResponse(body)

    def _check_assertion(self, assertion: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            self.key.public_key(),
            algorithms=["RS256"],
            # Google's token endpoint expects its own URL as the audience; google-auth sends it whatever
            # token_uri says, so the sandbox accepts that as well as its own URL.
            audience=[GOOGLE_TOKEN_URL, self.token_url],
            issuer=self.client_email,
            options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            leeway=60,
        )
        if claims["exp"] - claims["iat"] > 3600:
            raise jwt.InvalidTokenError("an assertion may live at most an hour")
        if SCOPE not in str(claims["scope"]).split():
            raise jwt.InvalidTokenError(f"scope must include {SCOPE}")
        return claims

    async def _send_http1(self, request: Request) -> Response:
        status, headers, body, delay = self.send_message(
            request.headers, request.path_params["project"], await request.body()
        )
        await self.state.pause(delay)
        return Response(body, status, headers)

    def _send_h2(self, headers: dict[str, str], body: bytes, connection: int) -> Answer:
        match = SEND_PATH.fullmatch(headers.get(":path", ""))
        if headers.get(":method") != "POST" or match is None:
            return 404, JSON, b'{"error": {"code": 404, "status": "NOT_FOUND"}}', 0.0
        return self.send_message(headers, match.group(1), body)

    def send_message(self, headers: Mapping[str, str], project: str, raw: bytes) -> Answer:
        """One `messages:send` as FCM answers it: (status, headers, body, delay), recorded."""
        authorization = headers.get("authorization", "")
        expiry = self.tokens.get(authorization[7:]) if authorization.startswith("Bearer ") else None
        if expiry is None or self.state.clock() >= expiry:
            body = {
                "code": 401,
                "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED",
            }
            return 401, JSON, orjson.dumps({"error": body}), 0.0
        if project != self.project_id:
            return fcm_error("SENDER_ID_MISMATCH", "Permission denied for this project.")
        entry: dict[str, Any] = {"kind": "send", "body": raw.decode(errors="replace")}
        try:
            message = check_message(raw)
        except MessageError as exc:
            entry.update(status=400, reason=str(exc))
            self.state.record(entry)
            return fcm_error("INVALID_ARGUMENT", str(exc))
        token = str(message.get("token", ""))
        entry.update(token=token, message=message)
        rule = self.state.match(token)
        delay = rule.delay if rule is not None else 0.0
        if rule is not None and (rule.reason or rule.status != 200):
            code = rule.reason or "INTERNAL"
            entry.update(status=STATUS_OF.get(code, (rule.status,))[0], reason=code)
            self.state.record(entry)
            return fcm_error(code, f"sandbox rule: {code}", rule.retry_after, delay)
        if not re.fullmatch(r"[A-Za-z0-9_:\-]{20,4096}", token):
            entry.update(status=400, reason="INVALID_ARGUMENT")
            self.state.record(entry)
            return fcm_error(
                "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"
            )
        self._sent += 1
        entry.update(status=200, reason="")
        self.state.record(entry)
        return 200, JSON, orjson.dumps({"name": f"projects/{self.project_id}/messages/{self._sent}"}), delay
