"""`revoke(user)` without a jti refuses every token of the user issued before it, on every process, for as long
as such a token can live; streams refuse a token that is expired or about to be (so clients refresh, not loop)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from api_calls import Route, call, signed

from support import PUBLISH_KEY, InProcessServer, ManualClock, app_of, open_stream
from tidings import Hub, Settings

PUBLISHER = {"Authorization": f"Bearer {PUBLISH_KEY}"}
STREAM = Route("GET", "/v1/events", "user")
DEVICES = Route("GET", "/v1/devices", "user")


@pytest.fixture
async def served(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> AsyncIterator[tuple[InProcessServer, httpx.AsyncClient, Hub]]:
    hub = Hub(make_settings(), clock=clock)
    async with (
        InProcessServer(app_of(hub)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield server, http, hub


def minted(clock: ManualClock, user: str = "alice", *, iat: bool = True, ttl: float = 600) -> str:
    now = int(clock())
    return signed({"sub": user, "exp": now + int(ttl), **({"iat": now} if iat else {})})


async def revoke(http: httpx.AsyncClient, **body: Any) -> None:
    response = await http.post("/v1/sessions/revoke", json=body, headers=PUBLISHER)
    assert response.status_code == 200, response.text


async def test_a_revoked_user_cannot_reopen_a_stream_with_the_same_token(
    served: Any, clock: ManualClock
) -> None:
    """Regression: revoking without a jti closed the user's streams, and the same token reopened them at once."""
    server, http, _ = served
    old = minted(clock)
    async with open_stream(server.url, token=old) as stream:
        await revoke(http, user_id="alice")
        with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
            while True:
                await stream.next_frame(timeout=5)
    for route in (STREAM, DEVICES):
        status, body = await call(http, route, old)
        assert (status, body["error"]) == (401, "token_revoked"), route
    assert (await call(http, STREAM, minted(clock, "bob")))[0] == 200  # other users are untouched
    clock.advance(1)  # a token issued after the revocation (iat in a later second) is accepted
    assert (await call(http, STREAM, minted(clock)))[0] == 200


async def test_a_token_without_iat_is_refused_once_its_user_was_revoked_until_no_such_token_can_live(
    served: Any, clock: ManualClock
) -> None:
    _, http, hub = served
    assert (await call(http, DEVICES, minted(clock, iat=False)))[0] == 200
    await revoke(http, user_id="alice")
    clock.advance(60)
    status, body = await call(http, DEVICES, minted(clock, iat=False))
    assert (status, body["error"]) == (401, "token_revoked")  # it cannot say it was issued after
    # every token accepted at revocation time has expired by now (longer ones are refused): the mark is gone
    settings = hub.settings
    clock.advance(settings.jwt_max_lifetime_seconds + settings.jwt_leeway_seconds)
    assert (await call(http, DEVICES, minted(clock, iat=False)))[0] == 200


async def test_a_token_valid_for_longer_than_the_maximum_lifetime_is_refused(
    served: Any, clock: ManualClock
) -> None:
    """What lets a revocation be forgotten: no accepted token outlives TIDINGS_JWT_MAX_LIFETIME_SECONDS."""
    _, http, hub = served
    longest = hub.settings.jwt_max_lifetime_seconds
    assert (await call(http, DEVICES, minted(clock, ttl=longest)))[0] == 200
    status, body = await call(http, DEVICES, minted(clock, ttl=longest + 3600))
    assert status == 401 and "TIDINGS_JWT_MAX_LIFETIME_SECONDS" in body["message"]


async def test_a_jti_revocation_still_refuses_only_that_session(served: Any, clock: ManualClock) -> None:
    _, http, _ = served
    now = int(clock())
    one, two = (signed({"sub": "alice", "exp": now + 600, "iat": now, "jti": j}) for j in ("s1", "s2"))
    await revoke(http, user_id="alice", jti="s1")
    assert (await call(http, DEVICES, one))[1]["error"] == "token_revoked"
    assert (await call(http, DEVICES, two))[0] == 200


@pytest.mark.redis
async def test_a_user_revocation_holds_on_every_process_for_the_longest_token_lifetime(
    make_settings: Callable[..., Settings], redis_settings: dict[str, str], redis_client: Any
) -> None:
    hubs = [Hub(make_settings(**redis_settings)) for _ in range(2)]
    async with (
        InProcessServer(app_of(hubs[0])) as a,
        InProcessServer(app_of(hubs[1])) as b,
        httpx.AsyncClient(base_url=a.url, timeout=10) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=10) as on_b,
    ):
        old = minted(ManualClock())
        assert (await call(on_b, DEVICES, old))[0] == 200
        await revoke(on_a, user_id="alice")
        status, body = await call(on_b, STREAM, old)
        assert (status, body["error"]) == (401, "token_revoked")
        key = f"{redis_settings['redis_prefix']}:revoked-user:alice"
        settings = hubs[0].settings
        longest_ms = (settings.jwt_max_lifetime_seconds + settings.jwt_leeway_seconds) * 1000
        assert longest_ms - 60_000 <= await redis_client.pttl(key) <= longest_ms


@pytest.mark.parametrize("seconds_left", [-10, 0, 2, 4])
async def test_a_stream_refuses_a_token_that_is_expired_or_expires_within_seconds(
    served: Any, clock: ManualClock, seconds_left: int
) -> None:
    """Regression: a token inside the 30 s expiry leeway got a 200 and its stream was closed a second later;
    EventSource reconnects with the same token, so browsers looped instead of seeing a 401 and refreshing."""
    _, http, _ = served
    now = int(clock())
    token = signed({"sub": "alice", "iat": now - 600, "exp": now + seconds_left})
    async with http.stream("GET", "/v1/events", params={"token": token}) as response:
        await response.aread()
    assert response.status_code == 401 and response.json()["error"] == "token_expired"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_stream_accepts_a_token_with_more_than_the_minimum_left_and_requests_keep_the_leeway(
    served: Any, clock: ManualClock
) -> None:
    _, http, hub = served
    now = int(clock())
    minimum = hub.settings.stream_min_token_seconds
    assert (await call(http, STREAM, signed({"sub": "alice", "exp": now + int(minimum) + 5})))[0] == 200
    # a plain request is over at once: a token just past its exp is still accepted within the leeway
    assert (await call(http, DEVICES, signed({"sub": "alice", "exp": now - 10})))[0] == 200
