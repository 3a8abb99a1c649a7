"""`tidings db upgrade | current`: the schema migrations shipped in the package, for operators."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from .. import db
from .common import settings_or_exit

app = typer.Typer(
    help="Database schema: apply and inspect the migrations shipped with tidings.", no_args_is_help=True
)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Database URL (default: TIDINGS_DATABASE_URL or the SQLite file).")
]


def resolve_url(url: str | None) -> str:
    """The URL to use: the option, else the settings' (which default to SQLite in the data directory)."""
    if url:
        return url
    return settings_or_exit().effective_database_url


def shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@app.command()
def upgrade(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    target = resolve_url(url)
    asyncio.run(db.upgrade(target, revision))
    typer.echo(f"{shown(target)}: at {asyncio.run(db.current(target))}")


@app.command()
def current(
    url: UrlOption = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 unless the database is at head.")] = False,
) -> None:
    """Print the database's revision and the newest shipped one."""
    target = resolve_url(url)
    revision = asyncio.run(db.current(target))
    head = db.head_revision()
    typer.echo(f"{shown(target)}: at {revision or 'nothing (empty database)'}; newest is {head}")
    if check and revision != head:
        raise typer.Exit(1)
