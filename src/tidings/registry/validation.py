"""What a device registration may contain: pydantic models whose errors name the offending field.

Two stages, because one depends on configuration:
- `DeviceIn` checks everything that is true everywhere (token formats, P-256 keys on the curve, provider and
  platform combinations, URL shape). FastAPI reports its failures as 422 with the field's path.
- `check_policy(device, policy)` applies the operator's Web Push host rules (https, allow-list, private
  addresses); callers turn its `PolicyViolation` into a 422 naming the same field.

Tokens are normalised so the same device cannot be stored twice: APNs hex is lower-cased and Web Push keys are
kept as unpadded base64url.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tidings.errors import PolicyViolation
from tidings.push.endpoints import EndpointPolicy, parse_endpoint
from tidings.registry.keys import normalise_auth, normalise_p256dh

__all__ = [
    "PLATFORMS_BY_PROVIDER",
    "DeviceIn",
    "PolicyViolation",
    "WebPushKeys",
    "WebPushSubscription",
    "check_policy",
]

Provider = Literal["apns", "fcm", "webpush"]
Platform = Literal["ios", "macos", "android", "web"]

# FCM serves Android, Apple and web apps alike; APNs only Apple platforms; Web Push only browsers.
PLATFORMS_BY_PROVIDER: dict[str, frozenset[str]] = {
    "apns": frozenset({"ios", "macos"}),
    "fcm": frozenset({"android", "ios", "macos", "web"}),
    "webpush": frozenset({"web"}),
}

APNS_TOKEN_RE = re.compile(r"^(?:[0-9a-fA-F]{2}){16,100}$")  # even-length hex, 32..200 digits (64 typical)
FCM_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,4096}$")  # printable ASCII without spaces
LOCALE_RE = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,127}$")
MAX_TOPICS = 50

# No control characters: PostgreSQL refuses NUL in text, and labels end up in operators' terminals.
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
AppId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$")]


class WebPushKeys(BaseModel):
    model_config = ConfigDict(extra="ignore")
    p256dh: str = Field(max_length=128)
    auth: str = Field(max_length=64)

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        try:
            return normalise_p256dh(value)
        except ValueError as exc:
            raise _err("key_format", str(exc)) from None

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        try:
            return normalise_auth(value)
        except ValueError as exc:
            raise _err("key_format", str(exc)) from None


class WebPushSubscription(BaseModel):
    """A browser's `PushSubscription.toJSON()`, posted unchanged."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str
    keys: WebPushKeys
    expirationTime: float | None = None  # the browser's spelling

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        _endpoint_shape(value)
        return value


class DeviceIn(BaseModel):
    """A registration. Web Push sends `subscription` (or `token`=endpoint with `p256dh` and `auth`).

    Fields are validated in declaration order, so rules that depend on the provider live in the dependent
    field's validator and the 422 names that field.
    """

    model_config = ConfigDict(extra="forbid", str_max_length=8192)

    provider: Provider
    platform: Platform
    token: str | None = Field(default=None, max_length=4096, validate_default=True)
    subscription: WebPushSubscription | None = Field(default=None, validate_default=True)
    p256dh: str | None = Field(default=None, validate_default=True)
    auth: str | None = Field(default=None, validate_default=True)
    environment: Literal["sandbox", "production"] | None = Field(default=None, validate_default=True)
    app_id: AppId | None = None
    name: Label | None = None
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    topics: list[str] = Field(default_factory=list, max_length=MAX_TOPICS)

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str, info: ValidationInfo) -> str:
        provider = info.data.get("provider")
        if provider is not None and value not in PLATFORMS_BY_PROVIDER[provider]:
            allowed = ", ".join(sorted(PLATFORMS_BY_PROVIDER[provider]))
            raise _err("platform_mismatch", f"provider {provider} serves platforms {allowed}, not {value}")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        if provider == "webpush":
            if value is not None:
                _endpoint_shape(value)
            return value
        if value is None:
            if provider is not None:
                raise _err("missing", "token is required")
            return value
        if provider == "apns":
            if not APNS_TOKEN_RE.fullmatch(value):
                raise _err("token_format", "APNs token must be even-length hex, 32 to 200 digits")
            return value.lower()
        if provider == "fcm" and not FCM_TOKEN_RE.fullmatch(value):
            raise _err("token_format", "FCM token must be 1-4096 printable characters without spaces")
        return value

    @field_validator("subscription")
    @classmethod
    def _subscription(
        cls, value: WebPushSubscription | None, info: ValidationInfo
    ) -> WebPushSubscription | None:
        provider = info.data.get("provider")
        if provider is None or "token" not in info.data:
            return value
        if provider != "webpush":
            if value is not None:
                raise _err("not_applicable", "subscription applies to webpush only")
        elif value is None and info.data["token"] is None:
            raise _err("missing", "subscription is required for webpush")
        elif value is not None and info.data["token"] is not None:
            raise _err("ambiguous", "send either subscription or token/p256dh/auth, not both")
        return value

    @field_validator("p256dh", "auth")
    @classmethod
    def _keys(cls, value: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        name = info.field_name or "key"
        if value is not None:
            if provider is not None and provider != "webpush":
                raise _err("not_applicable", f"{name} applies to webpush only")
            if info.data.get("subscription") is not None:
                raise _err("ambiguous", "send either subscription or token/p256dh/auth, not both")
            try:
                return normalise_p256dh(value) if name == "p256dh" else normalise_auth(value)
            except ValueError as exc:
                raise _err("key_format", str(exc)) from None
        flat_webpush = provider == "webpush" and info.data.get("token") is not None
        if flat_webpush and info.data.get("subscription") is None:
            raise _err("missing", f"{name} is required for webpush")
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        if provider == "apns":
            return value or "production"
        if value is not None and provider is not None:
            raise _err("not_applicable", "environment applies to apns only")
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not LOCALE_RE.fullmatch(value):
            raise _err("locale_format", "locale must be a BCP 47 tag such as en-GB")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise _err(
                "timezone_unknown", "timezone must be an IANA time zone such as Europe/Paris"
            ) from None
        return value

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        for topic in value:
            if not TOPIC_RE.fullmatch(topic):
                raise _err("topic_format", f"topic {topic[:64]!r} must be 1-128 of A-Z a-z 0-9 _ . : / -")
        return sorted(set(value))

    @model_validator(mode="after")
    def _flatten_subscription(self) -> DeviceIn:
        # One storage shape for both request forms: token is the endpoint, keys alongside.
        if self.subscription is not None:
            self.token = self.subscription.endpoint
            self.p256dh = self.subscription.keys.p256dh
            self.auth = self.subscription.keys.auth
        return self

    @property
    def endpoint_field(self) -> str:
        """Where the Web Push endpoint came from, for error messages."""
        return "subscription.endpoint" if self.subscription is not None else "token"


def _err(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def _endpoint_shape(value: str) -> None:
    try:
        parse_endpoint(value)
    except ValueError as exc:
        raise _err("endpoint_format", str(exc)) from None


def check_policy(device: DeviceIn, policy: EndpointPolicy) -> None:
    """Apply the configured Web Push host rules; raise PolicyViolation naming the field."""
    if device.provider != "webpush" or device.token is None:
        return
    try:
        policy.check(device.token)
    except ValueError as exc:
        raise PolicyViolation(device.endpoint_field, str(exc)) from None
