"""`tidings deliveries --event ID [--user U]`: what happened to each device for an event or a user.

With `--event`, the rows read as the event's story, oldest first: each push attempt per device, and each
decision of the delivery policy per user — skipped (presence, push_off, scope_push_off, muted,
quiet_hours_drop), held (quiet_hours; until when), merged (debounced; into which event), released
(quiet_hours_released) — and, when the push that carried it belongs to another event, where to look next.

`tidings deliveries --dead` lists the push queue's dead letters instead: jobs given up on, with the reason;
`--requeue-dead` puts them back (attempt 1) once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime

import typer

from tidings.config import Settings
from tidings.delivery.log import DeliveryRecord
from tidings.runtime import opened

from .common import settings_or_exit

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
    settings = settings_or_exit()
    if requeue_dead:
        typer.echo(asyncio.run(_requeue(settings, limit)))
        return
    if dead:
        for line in asyncio.run(_dead_letters(settings, limit, as_json)):
            typer.echo(line)
        return
    rows = asyncio.run(_query(settings, event, user, limit))
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
    if event is not None:  # a story reads forwards (the log answers newest first, ties by insertion)
        rows = rows[::-1]
    for line in format_rows(rows):
        typer.echo(line)
    if event is not None:
        for other in carried_by(rows, event):
            typer.echo(f"-> pushed as part of event {other}: tidings deliveries --event {other}")


_INTO = re.compile(r"\binto (\d+-\d+)\b")


def carried_by(rows: list[DeliveryRecord], event: str) -> list[str]:
    """The events whose push carried this one (merged into / coalesced into), in order of appearance."""
    found = (m.group(1) for r in rows if (m := _INTO.search(r.reason)) is not None)
    return [other for other in dict.fromkeys(found) if other != event]


async def _query(settings: Settings, event: str | None, user: str | None, limit: int) -> list[DeliveryRecord]:
    async with opened(settings) as runtime:
        return await runtime.deliveries.query(event_id=event, user_id=user, limit=limit)


async def _requeue(settings: Settings, limit: int) -> str:
    if not settings.uses_redis:
        return "the memory:// queue lives inside `tidings serve`; nothing to requeue from here"
    async with opened(settings) as runtime:
        return f"requeued {await runtime.queue.requeue_dead(limit)} dead letter(s)"


async def _dead_letters(settings: Settings, limit: int, as_json: bool) -> list[str]:
    if not settings.uses_redis:
        return [
            "the memory:// queue lives inside `tidings serve`; its dead letters are not visible from here"
        ]
    async with opened(settings) as runtime:
        letters = await runtime.queue.dead_letters(limit)
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
