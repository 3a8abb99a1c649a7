"""`tidings worker [--burst]`: the push delivery worker as its own process (the API process only enqueues).

It needs the Redis bus: with `memory://` the queue lives inside the server process and `tidings serve` runs
the worker there, so a separate worker process would have nothing to read.
"""

from __future__ import annotations

import asyncio

import typer

from tidings.errors import SchemaNotReady

from .common import fail, settings_or_exit

app = typer.Typer(help="Run the push delivery worker.")


@app.callback(invoke_without_command=True)
def worker(
    burst: bool = typer.Option(False, "--burst", help="Exit once no job is ready (scripts and tests)."),
) -> None:
    """Take push jobs from the queue and deliver them; SIGTERM finishes or hands back running jobs."""
    from tidings.logs import configure_logging
    from tidings.runtime import opened

    settings = settings_or_exit()
    if not settings.uses_redis:
        typer.echo(
            "tidings worker: the push queue is in-process with TIDINGS_BUS_URL=memory:// — "
            "`tidings serve` runs the worker itself; set TIDINGS_BUS_URL=redis://... to split it out.",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging(settings)

    async def run() -> str:
        async with opened(settings, require_schema=True) as runtime:
            return repr(await runtime.run_worker(burst=burst))

    try:
        typer.echo(asyncio.run(run()), err=True)
    except SchemaNotReady as exc:
        fail(f"tidings worker: {exc}")
