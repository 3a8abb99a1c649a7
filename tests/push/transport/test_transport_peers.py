"""The transport and the providers against independent HTTP/2 servers: hypercorn and nghttpd.

Neither is ours and neither shares code with the transport beyond, for hypercorn, the h2 library itself:
nghttpd is the nghttp2 project's C server. Every call must end within its deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from push_helpers import KEY_ID, TEAM_ID, TOPIC, note
from transport_peers import Certs, Nghttpd, assert_within, burst

from tidings.push.apns import ApnsProvider
from tidings.push.base import Outcome, Target
from tidings.push.fcm import FcmProvider
from tidings.push.transport import PoolSettings, Response, Transport, TransportError
from tidings.push.vapid import VapidKey
from tidings.push.webpush import WebPushProvider
from tidings.sandbox.fcm import FcmSandbox

Server = Callable[..., Any]
# token or endpoint prefix -> (status, reason/errorCode, retry-after)
ANSWERS = {
    "dead": (410, "Unregistered", None),
    "nope": (400, "BadDeviceToken", None),
    "slow": (429, "TooManyRequests", "7"),
    "down": (503, "ServiceUnavailable", "9"),
    "auth": (403, "InvalidProviderToken", None),
}
FCM_ANSWERS = {
    "dead": (404, "UNREGISTERED", None),
    "slow": (429, "QUOTA_EXCEEDED", "7"),
    "down": (503, "UNAVAILABLE", "9"),
    "auth": (403, "THIRD_PARTY_AUTH_ERROR", None),
}


def push_service(seen: Counter[str]) -> Any:
    """An ASGI app answering as APNs, FCM and a Web Push service would, chosen by the token's prefix."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        seen[headers.get(b"x-id", b"").decode() or scope["path"]] += 1
        status, payload, extra = _answer(scope["path"], body)
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": payload})

    return app


def _answer(path: str, body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    if path.startswith("/v1/projects/"):  # FCM
        token = json.loads(body)["message"]["token"]
        status, code, retry = FCM_ANSWERS.get(token[:4], (200, "", None))
        payload = {"name": "projects/p/messages/1"} if status == 200 else {"error": _fcm_error(status, code)}
        return status, json.dumps(payload).encode(), _retry(retry)
    token = path.rsplit("/", 1)[-1]
    status, reason, retry = ANSWERS.get(token[:4], (200, "", None))
    if path.startswith("/push/"):  # Web Push
        return (201 if status == 200 else status), b"", _retry(retry)
    return status, (json.dumps({"reason": reason}).encode() if reason else b""), _retry(retry)


def _fcm_error(status: int, code: str) -> dict[str, Any]:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    return {"code": status, "message": code, "status": code, "details": details}


def _retry(value: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", value.encode())] if value else []


def fast(**kw: Any) -> PoolSettings:
    return PoolSettings(connect_timeout=3.0, ping_after=1.0, ping_timeout=1.0, stall_after=0.5, **kw)


async def test_apns_answers_from_hypercorn_are_classified(hypercorn: Server, apns_pem: bytes) -> None:
    seen: Counter[str] = Counter()
    async with hypercorn(push_service(seen)) as origin:
        transport = Transport(timeout=5.0, http1=False, settings=fast())
        apns = ApnsProvider(
            key_pem=apns_pem, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC, base_url=origin,
            clock=time.time, transport=transport,
        )  # fmt: skip
        prepared = apns.prepare(note())
        tokens = [f"{prefix}{i:060d}" for prefix in (*ANSWERS, "good") for i in range(20)]
        try:
            async with asyncio.timeout(20):
                results = await asyncio.gather(*(apns.send(Target(t, "apns", t), prepared) for t in tokens))
        finally:
            await apns.aclose()
    by_prefix = {t[:4]: r for t, r in zip(tokens, results, strict=True)}
    assert len({(t[:4], r) for t, r in zip(tokens, results, strict=True)}) == len(by_prefix)  # no cross-talk
    assert by_prefix["dead"].outcome is Outcome.dead_token and by_prefix["nope"].outcome is Outcome.dead_token
    assert (by_prefix["slow"].outcome, by_prefix["slow"].retry_after) == (Outcome.retry_later, 7)
    assert (by_prefix["down"].outcome, by_prefix["down"].retry_after) == (Outcome.retry_later, 9)
    assert by_prefix["auth"].outcome is Outcome.credentials
    assert by_prefix["good"].outcome is Outcome.delivered
    assert len(seen) == len(tokens) and max(seen.values()) == 1


async def test_fcm_and_webpush_answers_from_hypercorn_are_classified(
    hypercorn: Server, fcm_sandbox: FcmSandbox, vapid_key: VapidKey
) -> None:
    seen: Counter[str] = Counter()
    async with hypercorn(push_service(seen)) as origin:
        fcm = FcmProvider(
            service_account_info=fcm_sandbox.service_account_info(),
            base_url=origin,
            token_url=fcm_sandbox.token_url,
            clock=time.time,
            transport=Transport(timeout=5.0, settings=fast()),
        )
        webpush = WebPushProvider(
            vapid_key=vapid_key, subject="mailto:ops@example.com", clock=time.time,
            http_hosts=["127.0.0.1"], transport=Transport(timeout=5.0, settings=fast()),
        )  # fmt: skip
        subscription = VapidKey.generate()  # any P-256 key works as the browser's
        keys = {"p256dh": subscription.public_key, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}
        try:
            async with asyncio.timeout(20):
                fcm_results = {
                    p: await fcm.send(Target("d", "fcm", f"{p}-registration-token"), fcm.prepare(note()))
                    for p in (*FCM_ANSWERS, "good")
                }
                web_results = {
                    p: await webpush.send(
                        Target("d", "webpush", f"{origin}/push/{p}-sub", **keys), webpush.prepare(note())
                    )
                    for p in (*ANSWERS, "good")
                }
            assert fcm.transport.speaks_http2(origin) and webpush.transport.speaks_http2(origin)
        finally:
            await fcm.aclose()
            await webpush.aclose()
    assert fcm_results["dead"].outcome is Outcome.dead_token
    assert (fcm_results["slow"].outcome, fcm_results["slow"].retry_after) == (Outcome.retry_later, 7)
    assert (fcm_results["down"].outcome, fcm_results["down"].retry_after) == (Outcome.retry_later, 9)
    assert fcm_results["auth"].outcome is Outcome.credentials
    assert fcm_results["good"].outcome is Outcome.delivered
    assert web_results["dead"].outcome is Outcome.dead_token
    assert web_results["nope"].outcome is Outcome.rejected  # 400 from a push service: our request was wrong
    assert (web_results["slow"].outcome, web_results["slow"].retry_after) == (Outcome.retry_later, 7)
    assert (web_results["down"].outcome, web_results["down"].retry_after) == (Outcome.retry_later, 9)
    assert web_results["auth"].outcome is Outcome.credentials
    assert web_results["good"].outcome is Outcome.delivered


def length_echo() -> Any:
    """An ASGI app answering every request with the length and a checksum of the body it received."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = f"{len(body)} {sum(body)}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    return app


async def test_bodies_larger_than_a_frame_arrive_whole(hypercorn: Server) -> None:
    """A body over the 16 KB frame size (the window allowing more) goes out as several DATA frames."""
    async with hypercorn(length_echo()) as origin:
        transport = Transport(timeout=5.0, http1=False, settings=fast())
        bodies = [bytes(range(256)) * 200, b"x" * 16_384, b"y" * 16_385]  # 51,200 bytes; one frame; just over
        try:
            answers = [await transport.request(origin, b"/echo", [], body) for body in bodies]
        finally:
            await transport.aclose()
    assert [a.body for a in answers] == [f"{len(b)} {sum(b)}".encode() for b in bodies]


async def test_hypercorn_goaway_every_300_requests_under_2000_concurrent(hypercorn: Server) -> None:
    """hypercorn closes a connection after 300 requests with GOAWAY, but its h2 then stops answering the streams
    it had taken (h2 issue 1181 on the server side) and treats our frames still in flight as a protocol error.
    Those requests reached the app: they fail as sent. Everything above the GOAWAY is resent and answered."""
    seen: Counter[str] = Counter()
    async with hypercorn(push_service(seen), keep_alive_max_requests=300) as origin:
        transport = Transport(timeout=10.0, http1=False, settings=fast())
        try:
            outcomes = await burst(transport, origin, 2000, within=10.0)
        finally:
            await transport.aclose()
    assert_within(outcomes, 10.0)
    assert max(seen.values()) == 1  # nothing sent twice
    failures = [o for o in outcomes if not o.ok]
    assert all(o.ident in seen and o.answer.sent for o in failures), failures[:3]  # type: ignore[union-attr]
    assert len(failures) <= (2000 // 300 + 1) * 100  # at most the streams in flight at each GOAWAY


@pytest.mark.parametrize("max_streams", ["1", "100"])
async def test_nghttpd_stream_limits(nghttpd: Callable[..., Nghttpd], max_streams: str) -> None:
    server = nghttpd("-m", max_streams)
    await server.start()
    transport = Transport(timeout=10.0, http1=False, settings=fast(max_connections=2))
    try:
        outcomes = await burst(transport, server.url, 500, within=10.0, path=lambda i: b"/index.html")
    finally:
        await transport.aclose()
    assert_within(outcomes, 10.0)
    assert all(isinstance(o.answer, Response) and o.answer.status == 200 for o in outcomes)


async def test_nghttpd_with_16_byte_windows_padding_and_trailers(nghttpd: Callable[..., Nghttpd]) -> None:
    # -w 4 / -W 4: its receive windows are 2^4-1 bytes; -b: padded frames; --trailer: trailers after the body.
    server = nghttpd("-w", "4", "-W", "4", "-b", "255", "--trailer", "x-trailer: 1", "--echo-upload")
    await server.start()
    transport = Transport(timeout=15.0, http1=False, settings=fast())
    sizes = [1, 15, 16, 17, 4000, 40_000]
    try:
        outcomes = await burst(
            transport, server.url, len(sizes), within=15.0, path=lambda i: b"/echo",
            body=lambda i: bytes([65 + i]) * sizes[i],
        )  # fmt: skip
        page = await transport.request(server.url, b"/index.html", [], b"", method=b"GET")
    finally:
        await transport.aclose()
    assert_within(outcomes, 15.0)
    for i, o in enumerate(outcomes):
        assert isinstance(o.answer, Response) and o.answer.body == bytes([65 + i]) * sizes[i]
    assert page.status == 200 and page.body == b"hello from nghttpd\n" * 10


async def test_nghttpd_killed_and_restarted_mid_burst(nghttpd: Callable[..., Nghttpd]) -> None:
    server = nghttpd()
    await server.start()
    transport = Transport(timeout=5.0, http1=False, settings=fast())
    try:
        running = asyncio.ensure_future(
            burst(transport, server.url, 3000, within=5.0, path=lambda i: b"/index.html")
        )
        await asyncio.sleep(0.05)
        server.kill()
        await server.start()
        outcomes = await running
        after = await burst(transport, server.url, 50, within=5.0, path=lambda i: b"/index.html")
    finally:
        await transport.aclose()
    assert_within(outcomes + after, 5.0)
    assert all(o.ok for o in after)  # the pool recovered by itself


async def test_tls_with_our_own_ca_negotiates_h2(
    hypercorn: Server, nghttpd: Callable[..., Nghttpd], certs: Certs
) -> None:
    server = nghttpd(certs=certs)
    await server.start()
    seen: Counter[str] = Counter()
    async with hypercorn(push_service(seen), certfile=str(certs.cert), keyfile=str(certs.key)) as origin:
        transport = Transport(timeout=5.0, http1=False, ssl_context=certs.client_context())
        try:
            outcomes = await burst(transport, origin, 50, within=5.0, path=lambda i: b"/3/device/good")
            page = await transport.request(server.url, b"/index.html", [], b"", method=b"GET")
            assert transport.speaks_http2(origin) and transport.speaks_http2(server.url)
        finally:
            await transport.aclose()
        assert all(isinstance(o.answer, Response) and o.answer.status == 200 for o in outcomes)
        assert page.status == 200
        untrusting = Transport(timeout=5.0, http1=False)  # the system's trust store does not know our CA
        try:
            with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED") as caught:
                await untrusting.request(origin, b"/", [], b"")
        finally:
            await untrusting.aclose()
        assert not caught.value.sent


async def test_http1_only_webpush_endpoint_under_concurrency(
    hypercorn: Server, certs: Certs, vapid_key: VapidKey
) -> None:
    seen: Counter[str] = Counter()
    config = {"certfile": str(certs.cert), "keyfile": str(certs.key), "alpn_protocols": ["http/1.1"]}
    async with hypercorn(push_service(seen), **config) as origin:
        webpush = WebPushProvider(
            vapid_key=vapid_key, subject="mailto:ops@example.com", clock=time.time,
            http_hosts=["127.0.0.1"],  # a loopback push service is refused unless named for development
            transport=Transport(timeout=15.0, ssl_context=certs.client_context(), settings=fast()),
        )  # fmt: skip
        keys = {"p256dh": VapidKey.generate().public_key, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}
        prepared = webpush.prepare(note())
        try:
            async with asyncio.timeout(30):  # 200 first contacts at once: the fallback must not race
                results = await asyncio.gather(
                    *(webpush.send(Target("d", "webpush", f"{origin}/push/good{i}", **keys), prepared)
                      for i in range(200))
                )  # fmt: skip
            assert webpush.transport.speaks_http2(origin) is False
        finally:
            await webpush.aclose()
    assert [r.outcome for r in results] == [Outcome.delivered] * 200, Counter(r.reason for r in results)
    assert len(seen) == 200 and max(seen.values()) == 1
