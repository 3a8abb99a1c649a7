"""The APNs sender's CPU per push without sockets: the real provider, transport and h2, against an in-memory server.

    .venv/bin/python -m bench.push.replay [--pushes 30000] [--concurrency 100] [--profile 25]

The server is an `h2` server connection in the same process (as the sandbox's: Huffman-coded, indexed answers
with `apns-id` and `apns-unique-id`); its bytes reach the client one loop iteration after they were written,
as over a socket. The time the server spends is measured and taken out, so the figure is the sender's alone:
no system calls, no second process, no other load. `--profile N` prints cProfile's N most expensive
functions (own time) of a second run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import time
import uuid
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hpack.huffman_table import decode_huffman

from tidings.push import apns
from tidings.push.apns import ApnsProvider
from tidings.push.transport import hpack_fast
from tidings.push.transport import pool as pool_module
from tidings.push.transport.connection import H2Protocol
from tidings.push.transport.deadlines import Deadlines
from tidings.push.transport.h2setup import Connection, StateMachine
from tidings.push.transport.hpack_fast import Decoder, Encoder, flatten

from . import phases

SERVER_SECONDS = [0.0]
PROFILER: list[cProfile.Profile] = []  # the server's time stays out of the profile


class Server:
    """The far end of one connection: answers every request with 200, as the sandbox does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000}
        )
        self.client: H2Protocol | None = None
        self.inbox: list[bytes] = []
        self.scheduled = False

    def start(self, client: H2Protocol) -> None:
        self.client = client
        self.h2.initiate_connection()
        self._deliver(self.h2.data_to_send())

    def receive(self, data: bytes) -> None:
        self.inbox.append(data)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._process)

    def _process(self) -> None:
        for profiler in PROFILER:
            profiler.disable()
        started = time.process_time()
        self.scheduled = False
        data, self.inbox = b"".join(self.inbox), []
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id:
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id:
                headers = [
                    (":status", "200"),
                    ("apns-id", str(uuid.uuid4())),
                    ("apns-unique-id", str(uuid.uuid4())),
                ]
                self.h2.send_headers(event.stream_id, headers, end_stream=True)
        out = self.h2.data_to_send()
        SERVER_SECONDS[0] += time.process_time() - started
        for profiler in PROFILER:
            profiler.enable()
        if out:
            self._deliver(out)

    def _deliver(self, data: bytes) -> None:
        client = self.client
        assert client is not None
        self.loop.call_soon(client.data_received, data)


class MemoryTransport:
    """What H2Protocol needs of an asyncio transport."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.server.receive(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


TRANSPORTS: list[MemoryTransport] = []


async def _open(self: pool_module.Pool) -> H2Protocol:
    protocol = H2Protocol(self.origin.authority, self.settings.limits, self.on_change)
    server = Server(self.loop)
    transport = MemoryTransport(server)
    TRANSPORTS.append(transport)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    server.start(protocol)
    await protocol.ready
    return protocol


def _without(levers: set[str]) -> None:
    """Turn levers of issue 11's follow-up off again, to measure each one's share (--without)."""
    if "count" in levers:  # h2's scan of every stream before each new one
        Connection.open_outbound_streams = h2.connection.H2Connection.open_outbound_streams  # type: ignore[method-assign]
    if "encode" in levers:  # hpack's encoder, no cached indices (still no Huffman, as before)
        Encoder.encode = lambda self, headers, huffman=False: hpack.Encoder.encode(
            self, headers, huffman=False
        )  # type: ignore[method-assign]
    if "decode" in levers:  # hpack's decoder, its Huffman decoding included
        Decoder.decode = lambda self, data, raw=False: list(hpack.Decoder.decode(self, data, raw))  # type: ignore[method-assign]
    if "huffman" in levers:  # only hpack's Huffman decoding
        hpack_fast.huffman_decode = decode_huffman
    if "deadlines" in levers:  # a timer per request, as asyncio.timeout arms
        original = Deadlines.start

        def start(self: Deadlines, when: float) -> Any:
            deadline = original(self, when)
            if self.queue and self.queue[-1] is deadline:
                self.queue.pop()
                deadline.handle = self.loop.call_at(when, deadline.expire)
            return deadline

        Deadlines.start = start  # type: ignore[method-assign]
    if "compact" in levers:  # every header through h2 one by one (no pre-encoded runs)
        Encoder.compact = lambda self, headers: flatten(headers)  # type: ignore[method-assign]
    if "h2" in levers:  # h2's own frame assertion, received-frame repr and state machine call
        Connection._prepare_for_sending = h2.connection.H2Connection._prepare_for_sending  # type: ignore[method-assign]
        Connection._receive_frame = h2.connection.H2Connection._receive_frame  # type: ignore[method-assign]
        StateMachine._transitions = h2.connection.H2ConnectionStateMachine._transitions
    if "uuid" in levers:  # uuid.uuid5 for apns-id
        apns.apns_id = lambda event, device: str(uuid.uuid5(apns.APNS_ID_NAMESPACE, f"{event}/{device}"))


def _provider() -> ApnsProvider:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ApnsProvider(
        key_pem=pem,
        key_id=phases.KEY_ID,
        team_id=phases.TEAM_ID,
        topic=phases.TOPIC,
        base_url="http://apns.invalid:80",
        clock=time.time,
    )


async def run(pushes: int, concurrency: int) -> tuple[float, int]:
    """CPU µs per push of the sender, and the pushes delivered."""
    provider = _provider()
    send = phases.tidings_apns(provider)
    for i in range(50):  # connection up, JWT minted, tables warm
        await send(i)
    per_lane = pushes // concurrency
    delivered = [0]

    async def lane(start: int) -> None:
        for k in range(per_lane):
            ok = await send(start + k * concurrency)
            delivered[0] += ok

    SERVER_SECONDS[0] = 0.0
    cpu = time.process_time()
    await asyncio.gather(*(lane(i) for i in range(concurrency)))
    cpu = time.process_time() - cpu - SERVER_SECONDS[0]
    await provider.aclose()
    return cpu / (per_lane * concurrency) * 1e6, delivered[0]


def _by_library(stats: pstats.Stats) -> str:
    """Own time per library: where the sender's CPU goes, in shares."""
    groups = {
        "h2/": "h2",
        "hpack/": "hpack",
        "hyperframe/": "hyperframe",
        "asyncio/": "asyncio",
        "uuid": "uuid",
    }
    totals: dict[str, float] = {}
    for (path, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        group = next((g for key, g in groups.items() if key in path), "")
        if not group:
            group = "tidings" if "/tidings/" in path else ("builtins" if path == "~" else "other")
            if group == "builtins" and ("uvloop" in name or "Future" in name or "Handle" in name):
                group = "asyncio"
        totals[group] = totals.get(group, 0.0) + row[2]
    whole = sum(totals.values())
    return "own time: " + ", ".join(
        f"{group} {share / whole:.0%}" for group, share in sorted(totals.items(), key=lambda kv: -kv[1])
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pushes", type=int, default=30000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--profile", type=int, default=0, help="also profile a run; print the top N")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--without", default="", help="levers off: count,encode,compact,decode,huffman,deadlines,h2,uuid"
    )
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    args = parser.parse_args()
    pool_module.Pool._open = _open  # type: ignore[method-assign]
    _without(set(filter(None, args.without.split(","))))
    if args.uvloop:
        import uvloop

        uvloop.install()
    results = [asyncio.run(run(args.pushes, args.concurrency)) for _ in range(args.runs)]
    writes = sum(t.writes for t in TRANSPORTS)
    median = statistics.median(us for us, _ in results)
    print(
        f"sender CPU per push: median {median:.1f} µs, best {min(us for us, _ in results):.1f} µs, runs "
        + ", ".join(f"{us:.1f}" for us, _ in results)
        + f" ({results[0][1]} delivered per run; {writes} socket writes in all)"
    )
    if args.profile:
        profiler = cProfile.Profile()
        PROFILER.append(profiler)
        profiler.enable()
        asyncio.run(run(args.pushes, args.concurrency))
        profiler.disable()
        PROFILER.clear()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        print(_by_library(stats))
        stats.sort_stats("tottime").print_stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue())


if __name__ == "__main__":
    main()
