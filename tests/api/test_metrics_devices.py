"""devices_active{provider} follows the registry when /metrics is scraped."""

from __future__ import annotations

import httpx

from support import InProcessServer
from tidings.registry.validation import DeviceIn


def gauge(text: str, provider: str) -> float:
    line = next(
        line for line in text.splitlines() if line.startswith(f'devices_active{{provider="{provider}"}}')
    )
    return float(line.rsplit(" ", 1)[1])


async def test_devices_active_counts_enabled_devices_per_provider(server: InProcessServer) -> None:
    devices = server.hub.devices  # type: ignore[attr-defined]
    await devices.register("alice", DeviceIn(provider="apns", platform="ios", token="ab" * 32))
    await devices.register("bob", DeviceIn(provider="apns", platform="ios", token="cd" * 32))
    await devices.register("bob", DeviceIn(provider="fcm", platform="android", token="fcm-token-1"))
    await devices.disable("apns", "cd" * 32, "Unregistered")
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics")).text
    assert (gauge(text, "apns"), gauge(text, "fcm"), gauge(text, "webpush")) == (1, 1, 0)
