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

# The few RFC 9113 frame constants it needs, written out: a peer that checks nothing has no use for a library.
DATA, HEADERS, SETTINGS, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
FRAME = struct.Struct("!BHBBL")  # 24-bit length as (high byte, low 16 bits), type, flags, stream id


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return FRAME.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


CREATED = b"\x08\x03201"  # HPACK: literal without indexing, name :status (static 8), value "201"


class Responder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.preface = False
        self.received = 0
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
                out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, CREATED))
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
