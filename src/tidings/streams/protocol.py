"""The HTTP protocol `tidings serve` runs: uvicorn's httptools protocol, plus the socket in the ASGI scope.

With the socket at hand, a stream's events are written straight to it from the router — the same pre-encoded
chunk for every recipient, no task wake-up and no ASGI `send` per event (bench/FINDINGS.md: those were most of
the remaining cost per delivery). The ASGI path stays for every other server and for apps that mount the hub:
`StreamEndpoint` uses the socket only when this protocol put it in the scope.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TRANSPORT_KEY = "tidings.transport"


class TidingsHttpProtocol(HttpToolsProtocol):
    """Exposes the connection's transport as `scope["extensions"]["tidings.transport"]`."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_KEY: {"transport": self.transport}}
