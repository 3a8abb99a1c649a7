"""`tidings deliveries --event ID [--user U]`: what happened to each device for an event or a user.

`tidings deliveries --dead` lists the push queue's dead letters instead: jobs given up on, with the reason;
`--requeue-dead` puts them back (attempt 1) once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import typer

from tidings.config import Settings, load_settings
from tidings.delivery.log import DeliveryRecord
from tidings.errors import ConfigError

app = typer.Typer(help="Show the push delivery log.")


@app.callback(invoke_without_command=True)
def deliveries(
    event: str | None = typer.Option(None, "--event", help="Event id."),
    user: str | None = typer.Option(None, "--user", help="User id."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    dead: bool = typer.Option(False, "--dead", help="The queue's dead letters (jobs given up on)."),
    requeue_dead: bool = typer.Option(False, "--requeue-dead", help="Put up to --limit dead letters back."),
) -> None:
    """Newest first: time, attempt, provider, device, user, outcome, status, reason, latency."""
    if event is None and user is None and not (dead or requeue_dead):
        typer.echo("tidings deliveries: give --event ID and/or --user USER (or --dead)", err=True)
        raise typer.Exit(2)
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"tidings deliveries: {exc}", err=True)
        raise typer.Exit(2) from exc
    if requeue_dead:
        typer.echo(asyncio.run(_requeue(settings, limit)))
        return
    if dead:
        for line in asyncio.run(_dead_letters(settings, limit, as_json)):
            typer.echo(line)
        return
    rows = asyncio.run(_query(settings.effective_database_url, event, user, limit))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    if not rows:
        typer.echo(
            "no deliveries recorded"
            + (f" for event {event}" if event else "")
            + (f" for user {user}" if user else "")
        )
        return
    for line in format_rows(rows):
        typer.echo(line)


async def _query(url: str, event: str | None, user: str | None, limit: int) -> list[DeliveryRecord]:
    from tidings import db
    from tidings.delivery.log import DeliveryLog

    engine = db.create_engine(url)
    try:
        return await DeliveryLog(engine).query(event_id=event, user_id=user, limit=limit)
    finally:
        await engine.dispose()


async def _requeue(settings: Settings, limit: int) -> str:
    from tidings.delivery.queue import create_queue

    if not settings.uses_redis:
        return "the memory:// queue lives inside `tidings serve`; nothing to requeue from here"
    queue = create_queue(settings)
    try:
        return f"requeued {await queue.requeue_dead(limit)} dead letter(s)"
    finally:
        await queue.close()


async def _dead_letters(settings: Settings, limit: int, as_json: bool) -> list[str]:
    from tidings.delivery.queue import create_queue

    if not settings.uses_redis:
        return [
            "the memory:// queue lives inside `tidings serve`; its dead letters are not visible from here"
        ]
    queue = create_queue(settings)
    try:
        letters = await queue.dead_letters(limit)
    finally:
        await queue.close()
    if as_json:
        return [
            json.dumps(
                {
                    "event_id": d.job.event_id,
                    "attempt": d.job.attempt,
                    "devices": d.job.device_ids,
                    "reason": d.reason,
                    "at": datetime.fromtimestamp(d.at, UTC).isoformat(),
                }
            )
            for d in letters
        ]
    if not letters:
        return ["no dead letters"]
    return [
        f"{datetime.fromtimestamp(d.at, UTC):%Y-%m-%d %H:%M:%S}  {d.job.event_id}  try {d.job.attempt}  "
        f"{len(d.job.device_ids) if d.job.device_ids is not None else 'all'} device(s)  {d.reason}"
        for d in letters
    ]


def format_rows(rows: list[DeliveryRecord]) -> list[str]:
    header = ("time (UTC)", "try", "provider", "device", "user", "outcome", "status", "ms", "reason")
    table = [header] + [
        (
            datetime.fromtimestamp(r.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(r.attempt),
            r.provider,
            r.device_id or "-",
            r.user_id or "-",
            r.outcome,
            "" if r.status is None else str(r.status),
            "" if r.latency_ms is None else f"{r.latency_ms:.0f}",
            r.reason,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in table
    ]
