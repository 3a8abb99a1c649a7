"""Web Push endpoint checks: the URL shape (static) and the operator's host policy (SSRF defence).

One policy, used both when a browser registers a subscription and when the worker sends to it, so the two can
never disagree (they once did: a capitalised or trailing-dot allow-list entry registered fine and then every
send was refused).

A Web Push endpoint is a URL the server will later POST to, chosen by the client. Left unchecked it lets
anyone make the server call internal services (cloud metadata, admin ports). So:
- https only, except hosts the operator lists for local development (`TIDINGS_WEBPUSH_HTTP_HOSTS`);
- no credentials in the URL, no fragments, no control characters;
- IP literals outside global unicast space (loopback, private, link-local, CGNAT, ...) and `localhost` names
  are refused unless listed for development, including the legacy IPv4 spellings (`2130706433`, `0x7f.1`) that
  `getaddrinfo` would still resolve to 127.0.0.1;
- with `TIDINGS_WEBPUSH_ALLOWED_HOSTS` set, the host must match an entry (`fcm.googleapis.com`, or
  `*.notify.windows.com` / `.notify.windows.com` for any subdomain). Hosts and entries are compared
  case-insensitively and without a trailing dot.
DNS names that resolve to private addresses are not caught here (that needs resolution at send time); the
allow-list is the complete defence and production deployments should set it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_ENDPOINT_LENGTH = 2048


def parse_endpoint(url: str) -> SplitResult:
    """Check the URL's shape; raise ValueError with a client-facing message."""
    if len(url) > MAX_ENDPOINT_LENGTH:
        raise ValueError(f"endpoint is longer than {MAX_ENDPOINT_LENGTH} characters")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("endpoint contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError("endpoint must be an https URL")
    if not parts.hostname:
        raise ValueError("endpoint has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("endpoint must not carry credentials")
    if parts.fragment:
        raise ValueError("endpoint must not have a fragment")
    if port == 0:
        raise ValueError("endpoint port must be between 1 and 65535")
    return parts


def _normalise_host(host: str) -> str:
    return host.lower().rstrip(".")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ip
    # inet_aton accepts what resolvers accept: "127.1", "0x7f000001", "2130706433", "0177.0.0.1".
    if host and all(ch in "0123456789abcdefx." for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _normalise_pattern(pattern: str) -> str:
    """`*.example.com` and `.example.com` both mean "any subdomain of example.com": kept as `.example.com`."""
    pattern = _normalise_host(pattern.strip())
    return pattern[1:] if pattern.startswith("*.") else pattern


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host.endswith(pattern) and len(host) > len(pattern)
    return host == pattern


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """The operator's rules for Web Push endpoint hosts (from Settings)."""

    http_hosts: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "http_hosts", tuple(_normalise_host(h.strip()) for h in self.http_hosts))
        object.__setattr__(self, "allowed_hosts", tuple(_normalise_pattern(h) for h in self.allowed_hosts))

    @classmethod
    def from_lists(cls, http_hosts: Iterable[str], allowed_hosts: Iterable[str]) -> EndpointPolicy:
        return cls(tuple(h for h in http_hosts if h.strip()), tuple(h for h in allowed_hosts if h.strip()))

    def problem(self, url: str) -> str:
        """Why we will not POST to `url` (a reason code for the delivery log), or "" when it is fine."""
        try:
            self.check(url)
        except EndpointRefused as exc:
            return exc.code
        return ""

    def check(self, url: str) -> None:
        """Raise EndpointRefused (a ValueError with a client-facing message) when `url` may not be used."""
        try:
            parts = parse_endpoint(url)
        except ValueError as exc:
            raise EndpointRefused("endpoint_invalid", str(exc)) from None
        host = _normalise_host(parts.hostname or "")
        dev_host = host in self.http_hosts
        if parts.scheme == "http" and not dev_host:
            raise EndpointRefused("endpoint_not_https", "endpoint must be an https URL")
        if dev_host:
            return  # the operator named this host for development; it is trusted as is
        ip = _ip_literal(host)
        if ip is not None and not ip.is_global:
            raise EndpointRefused(
                "endpoint_host_private", "endpoint host is a private, loopback or reserved address"
            )
        if host == "localhost" or host.endswith(".localhost"):
            raise EndpointRefused("endpoint_host_private", "endpoint host is a loopback name")
        if self.allowed_hosts and not any(_matches(host, p) for p in self.allowed_hosts):
            raise EndpointRefused(
                "endpoint_host_not_allowed", f"endpoint host {host!r} is not an allowed push service"
            )


class EndpointRefused(ValueError):
    """An endpoint the policy refuses: `code` for the delivery log, the message for the registering client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
