"""`tidings devices list | add | remove | prune`: the device registry for operators.

Embedded SQLite databases are upgraded on first use (zero setup, as the server does); a PostgreSQL database
must be migrated with `tidings db upgrade` first, so a CLI run never changes a production schema by surprise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from ..push.endpoints import EndpointPolicy
from ..registry.retire import prune_once
from ..registry.store import Device, DeviceStore
from ..registry.validation import DeviceIn, PolicyViolation, check_policy
from ..runtime import opened
from .common import settings_or_exit

app = typer.Typer(help="Registered push devices: list, add, remove, prune.", no_args_is_help=True)

T = TypeVar("T")


def _run(work: Callable[[DeviceStore], Awaitable[T]]) -> T:
    settings = settings_or_exit()

    async def go() -> T:
        async with opened(settings) as runtime:
            return await work(runtime.devices)

    try:
        return asyncio.run(go())
    except DBAPIError as exc:
        typer.echo(f"tidings devices: database error: {exc.orig!r}", err=True)
        typer.echo("(is the schema migrated? run `tidings db upgrade`)", err=True)
        raise typer.Exit(1) from exc


def _row(device: Device) -> dict[str, Any]:
    return {
        "id": device.id, "user_id": device.user_id, "provider": device.provider, "platform": device.platform,
        "token": device.token, "name": device.name, "active": device.active,
        "disabled_reason": device.disabled_reason, "last_seen_at": device.last_seen_at.isoformat(),
        "last_used_at": device.last_used_at.isoformat() if device.last_used_at else None,
    }  # fmt: skip


def _print(devices: list[Device], as_json: bool) -> None:
    if as_json:
        for device in devices:
            typer.echo(json.dumps(_row(device)))
        return
    for d in devices:
        state = "active" if d.active else f"disabled ({d.disabled_reason})"
        token = d.token if len(d.token) <= 40 else d.token[:37] + "..."
        seen = d.last_seen_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{d.id}  {d.user_id:<20} {d.provider:<7} {d.platform:<7} {seen}  {state:<10} {token}")


@app.command("list")
def list_devices(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's devices.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many rows.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List devices: id, user, provider, platform, last registration, state, token."""

    async def work(store: DeviceStore) -> list[Device]:
        return (await store.admin_list(user_id=user, limit=limit, cursor=None))[0]

    devices = _run(work)
    _print(devices, as_json)
    if not devices and not as_json:
        typer.echo("no devices", err=True)


@app.command()
def add(
    user: Annotated[str, typer.Option("--user", help="Owner's user id.")],
    provider: Annotated[str, typer.Option(help="apns | fcm | webpush")],
    platform: Annotated[str, typer.Option(help="ios | macos | android | web")],
    token: Annotated[str, typer.Option(help="APNs hex token, FCM token, or the Web Push endpoint.")],
    p256dh: Annotated[str | None, typer.Option(help="Web Push: the subscription's p256dh key.")] = None,
    auth: Annotated[str | None, typer.Option(help="Web Push: the subscription's auth secret.")] = None,
    environment: Annotated[str | None, typer.Option(help="APNs: sandbox | production.")] = None,
    app_id: Annotated[str | None, typer.Option("--app-id", help="App id / APNs topic.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the device.")] = None,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="A topic to receive (repeatable).")
    ] = None,
) -> None:
    """Register a device for a user (the same validation as the HTTP API)."""
    fields = {"provider": provider, "platform": platform, "token": token, "p256dh": p256dh, "auth": auth,
              "environment": environment, "app_id": app_id, "name": name, "topics": topic or []}  # fmt: skip
    settings = settings_or_exit()
    try:
        device_in = DeviceIn.model_validate({k: v for k, v in fields.items() if v is not None})
        check_policy(
            device_in, EndpointPolicy.from_lists(settings.webpush_http_hosts, settings.webpush_allowed_hosts)
        )
    except ValidationError as exc:
        for err in exc.errors():
            typer.echo(f"--{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    except PolicyViolation as exc:
        typer.echo(f"--token: {exc.message}", err=True)
        raise typer.Exit(2) from None
    device, created = _run(lambda store: store.register(user, device_in))
    typer.echo(f"{'registered' if created else 'refreshed'} {device.id} for {device.user_id}")


@app.command()
def remove(
    device_id: Annotated[str | None, typer.Argument(help="The device id.")] = None,
    token: Annotated[str | None, typer.Option(help="Remove by token instead (needs --user).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="The owner, with --token.")] = None,
) -> None:
    """Remove a device by id (whoever owns it), or by --token and --user."""
    if device_id is not None and token is None:
        removed = _run(lambda store: store.delete(device_id))
    elif device_id is None and token is not None and user is not None:
        removed = _run(lambda store: store.remove(user, token=token))
    else:
        typer.echo("tidings devices remove: give a DEVICE_ID, or --token with --user", err=True)
        raise typer.Exit(2)
    if not removed:
        typer.echo("no such device", err=True)
        raise typer.Exit(1)
    typer.echo("removed")


@app.command()
def prune() -> None:
    """Delete devices not registered within TIDINGS_DEVICE_TTL_DAYS, and those disabled longer ago."""
    report = _run(prune_once)
    typer.echo(f"pruned {report.total} devices ({report.stale} stale, {report.disabled} disabled)")
