"""A minimal HTTP/2 responder for the benchmark: answers every request `201` at once, checks nothing.

The sandbox verifies VAPID and decrypts every push (~430 us a message in Python), so against it the wall rate
measures the sandbox. This responder costs a few microseconds a request, so the sender runs flat out and its
CPU per notification is measured without idle loop wake-ups. It is not a push service: it never decrypts.
Usage: python -m bench.push.responder <cpu>; prints its port, serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys

from tidings.push.h2frames import (
    ACK,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME,
    HEADERS,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
)

CREATED = b"\x08\x03201"  # HPACK: literal without indexing, name :status (static 8), value "201"
# The client asks for an HPACK table of 0: a compliant encoder says so (a size update) in its next header block.
SIZE_UPDATE = b"\x20"


class Responder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.preface = False
        self.received = 0
        self.first_block = True
        transport.write(frame(SETTINGS, 0, 0, struct.pack("!HL", 0x3, 1000)))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buffer, offset, out = self.buffer, 0, []
        buffer += data
        if not self.preface:
            if len(buffer) < 24:
                return
            del buffer[:24]
            self.preface = True
        while len(buffer) - offset >= 9:
            high, low, kind, flags, stream_id = FRAME.unpack_from(buffer, offset)
            size = (high << 16) | low
            if len(buffer) - offset < 9 + size:
                break
            offset += 9 + size
            if kind == SETTINGS and not flags & ACK:
                out.append(frame(SETTINGS, ACK, 0))
            elif kind == DATA:
                self.received += size
            if kind in (HEADERS, DATA) and flags & END_STREAM:
                block = SIZE_UPDATE + CREATED if self.first_block else CREATED
                self.first_block = False
                out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block))
        del buffer[:offset]
        if self.received > 1 << 15:
            out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack("!L", self.received)))
            self.received = 0
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def main() -> None:
    server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    cpu = int(sys.argv[1])
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
