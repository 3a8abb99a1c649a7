"""The HTTP protocol `tidings serve` runs: uvicorn's httptools protocol, plus the socket in the ASGI scope.

With the socket at hand, a stream's events are written straight to it from the router — the same pre-encoded
chunk for every recipient, no task wake-up and no ASGI `send` per event (bench/FINDINGS.md: those were most of
the remaining cost per delivery). The ASGI path stays for every other server and for apps that mount the hub:
`StreamEndpoint` uses the socket only when this protocol put it in the scope.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..api.stream import TRANSPORT_KEY


class TidingsHttpProtocol(HttpToolsProtocol):
    """Exposes the connection's transport as `scope["extensions"]["tidings.transport"]["transport"]`, and calls
    the `on_lost` callable a stream may put there when the connection drops (so a stream needs no task waiting
    on `receive()` to learn of the disconnect)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_KEY: {"transport": self.transport}}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        scope = getattr(self, "scope", None)  # absent if the connection closed before a request began
        on_lost = scope["extensions"][TRANSPORT_KEY].get("on_lost") if scope else None
        if on_lost is not None:
            on_lost()
