"""The sandbox process of the push benchmark: APNs (h2c) and Web Push on 127.0.0.1, pinned to its own core.

Prints one JSON line (URLs and Web Push subscriptions) when ready, then serves until stdin closes.
Usage: python -m bench.push.serve <apns public key PEM> <subscriptions> <cpu>
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.webpush import WebPushSandbox

KEY_ID, TEAM_ID, TOPIC = "BENCHKEY01", "BENCHTEAM1", "com.example.bench"


async def main(pem_path: str, subscriptions: int) -> None:
    public_key = serialization.load_pem_public_key(Path(pem_path).read_bytes())  # noqa: ASYNC240 (start-up)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    async with (
        ApnsSandbox(key_id=KEY_ID, team_id=TEAM_ID, public_key=public_key) as apns,
        WebPushSandbox() as webpush,
    ):
        # The same push service on both protocols: tidings uses HTTP/2, pywebpush (aiohttp) HTTP/1.1.
        subs = [webpush.subscribe() for _ in range(subscriptions)]
        subs_http1 = [webpush.subscribe(http1=True) for _ in range(subscriptions)]
        info = {
            "apns": apns.url,
            "webpush": webpush.url,
            "subscriptions": subs,
            "subscriptions_http1": subs_http1,
        }
        print(json.dumps(info), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    cpu = int(sys.argv[3])
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
