"""`tidings worker`, `tidings doctor` and `tidings deliveries`, on real parts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from delivery.sandbox_rig import ApnsRig, apns_rig, apns_settings, order_job
from support import REDIS_URL, ManualClock, redis_or_skip
from tidings.cli import deliveries as deliveries_cli
from tidings.cli import doctor as doctor_cli
from tidings.config import Settings
from tidings.delivery.log import DeliveryRecord
from tidings.push.vapid import VapidKey


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[ApnsRig]:
    async with apns_rig(tmp_path, clock) as r:
        yield r


def write_fcm_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "tidings@demo-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info))


async def test_doctor_all_green_with_every_provider_and_redis(rig: ApnsRig, tmp_path: Path) -> None:
    client = await redis_or_skip()
    await client.aclose()
    fcm, vapid = tmp_path / "fcm.json", tmp_path / "vapid.pem"
    write_fcm_key(fcm)
    VapidKey.generate().write(vapid)
    settings = apns_settings(
        rig,
        tmp_path,
        fcm_credentials_path=fcm,
        vapid_private_key_path=vapid,
        vapid_subject="mailto:ops@example.com",
        bus_url=REDIS_URL,
        redis_prefix="test-doctor",
    )
    checks = {c.name: c for c in await doctor_cli.run_checks(settings)}
    bad = {n: (c.status, c.detail) for n, c in checks.items() if c.status not in ("ok", "warn")}
    assert bad == {}
    assert checks["FCM project"].detail == "demo-project"
    assert checks["VAPID key"].detail.startswith("P-256; public key B")  # 0x04 point, base64url
    assert all(checks[f"provider {n}"].status == "ok" for n in ("apns", "fcm", "webpush"))
    assert checks["broker"].detail.startswith(REDIS_URL)


async def test_doctor_names_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "bad.p8").write_text("not a key")
    (tmp_path / "fcm.json").write_text('{"type": "authorized_user"}')
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        bus_url="redis://127.0.0.1:1/0",
        apns_key_path=tmp_path / "bad.p8",
        apns_key_id="short",
        fcm_credentials_path=tmp_path / "fcm.json",
        vapid_private_key_path=tmp_path / "missing.pem",
    )
    checks = {c.name: c for c in await doctor_cli.run_checks(settings)}
    assert checks["APNs key"].status == "fail" and "not a .p8" in checks["APNs key"].detail
    assert checks["APNs key id"].status == "warn"
    assert checks["APNs team id"].status == "fail" and checks["APNs topic"].status == "fail"
    assert checks["FCM credentials"].status == "fail"
    assert checks["VAPID key"].status == "fail" and checks["VAPID subject"].status == "fail"
    assert checks["database"].status == "fail" and "unreachable" in checks["database"].detail
    assert checks["broker"].status == "fail" and "unreachable" in checks["broker"].detail
    assert checks["provider apns"].status == "off"


def test_doctor_cli_prints_a_checklist_and_fails_on_failure(tmp_path: Path) -> None:
    env = {"TIDINGS_DATA_DIR": str(tmp_path), "TIDINGS_APNS_KEY_PATH": str(tmp_path / "nope.p8")}
    result = CliRunner().invoke(doctor_cli.app, [], env=env)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("✘ APNs key") and "nope.p8" in line for line in lines)
    assert any(line.startswith("! database") and "does not exist yet" in line for line in lines)
    assert not (tmp_path / "tidings.db").exists()  # looking does not create it
    assert any(line.startswith("- FCM") for line in lines)


async def test_deliveries_cli_shows_an_events_log(rig: ApnsRig, tmp_path: Path) -> None:
    await rig.log.record(
        [DeliveryRecord("ev-9", "dev-1", "u1", "apns", "dead_token", "Unregistered", 410, 1, 12.0, 1.8e9)]
    )
    env = {"TIDINGS_DATA_DIR": str(tmp_path), "TIDINGS_DATABASE_URL": rig.database_url}
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, deliveries_cli.app, ["--event", "ev-9"], env=env)
    assert result.exit_code == 0, result.output
    header, line = result.output.splitlines()
    assert header.split()[:3] == ["time", "(UTC)", "try"]
    assert "dev-1" in line and "dead_token" in line and line.endswith("Unregistered")
    result = await asyncio.to_thread(runner.invoke, deliveries_cli.app, ["--event", "nope"], env=env)
    assert "no deliveries recorded for event nope" in result.output
    assert (await asyncio.to_thread(runner.invoke, deliveries_cli.app, [], env=env)).exit_code == 2


async def test_deliveries_cli_lists_dead_letters_on_redis(tmp_path: Path, redis_prefix: str) -> None:
    from support import drop_prefix
    from tidings.delivery.queue.redis import RedisQueue

    client = await redis_or_skip()
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix)
    try:
        await queue.enqueue(order_job(["u1"], event_id="ev-dead"))
        [lease] = await queue.reserve("c1", block_seconds=0.5)
        await queue.dead_letter(lease, lease.job, "gave up after 5 attempt(s): apns: ServiceUnavailable")
        env = {
            "TIDINGS_DATA_DIR": str(tmp_path),
            "TIDINGS_BUS_URL": REDIS_URL,
            "TIDINGS_REDIS_PREFIX": redis_prefix,
        }
        runner = CliRunner()
        result = await asyncio.to_thread(runner.invoke, deliveries_cli.app, ["--dead"], env=env)
        assert result.exit_code == 0, result.output
        [line] = result.output.splitlines()
        assert "ev-dead" in line and "all device(s)" in line and line.endswith("apns: ServiceUnavailable")
        result = await asyncio.to_thread(runner.invoke, deliveries_cli.app, ["--dead", "--json"], env=env)
        assert json.loads(result.output)["reason"].startswith("gave up after 5")
        result = await asyncio.to_thread(runner.invoke, deliveries_cli.app, ["--requeue-dead"], env=env)
        assert result.output.strip() == "requeued 1 dead letter(s)"
        stats = await queue.stats()
        assert (stats.dead, stats.ready) == (0, 1)
    finally:
        await queue.close()
        await drop_prefix(client, redis_prefix)
        await client.aclose()


def test_worker_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    from tidings.cli import worker as worker_cli

    env = {
        "TIDINGS_DATA_DIR": str(tmp_path),
        "TIDINGS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        "TIDINGS_BUS_URL": REDIS_URL,
    }
    result = CliRunner().invoke(worker_cli.app, ["--burst"], env=env)
    assert result.exit_code == 2
    assert "schema is at nothing" in result.output and "tidings db upgrade" in result.output


def test_worker_explains_that_the_memory_bus_runs_it_in_process(tmp_path: Path) -> None:
    from tidings.cli import worker as worker_cli

    result = CliRunner().invoke(worker_cli.app, [], env={"TIDINGS_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "tidings serve" in result.output
