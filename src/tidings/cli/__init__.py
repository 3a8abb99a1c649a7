"""The `tidings` command: thin — parse, call, print."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .. import __version__
from ..config import Settings
from ..devmode import ensure_dev_secrets, generated_fields
from .common import fail, settings_or_exit

app = typer.Typer(
    help="tidings: a notification hub (SSE streams, APNs, FCM, Web Push).", no_args_is_help=True
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (TIDINGS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TIDINGS_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes; more than one needs a redis:// bus")] = 1,
) -> None:
    """Run the hub as a standalone server."""
    from ..logs import configure_logging
    from ..server.serve import serve as run

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    configured = settings_or_exit(**overrides)
    settings = ensure_dev_secrets(configured)
    if workers > 1 and not settings.uses_redis:
        fail("--workers > 1 needs a shared bus: set TIDINGS_BUS_URL=redis://...")
    configure_logging(settings)
    if settings.is_development:
        typer.echo(_walkthrough(settings, generated_fields(configured)), err=True)
    run(settings, workers=workers)


def _walkthrough(settings: Settings, generated: frozenset[str]) -> str:
    """A ready-to-paste curl pair. It shows only secrets generated for this data directory: a configured publish
    key or JWT secret never reaches a terminal (or the log it is captured in)."""
    from ..auth import mint_token

    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    if "jwt_secret" in generated:
        token = mint_token(settings.jwt_secret, "alice", ttl=3600)
    else:
        token = (
            "$(tidings token --user alice)" if settings.jwt_secret else "<a JWT for alice from your issuer>"
        )
    key = settings.publish_key if "publish_key" in generated else "$TIDINGS_PUBLISH_KEY"
    event = json.dumps({"type": "order.created", "data": {"order_id": 1}, "to": {"users": ["alice"]}})
    return (
        "\ntidings (development mode). Try it — in one terminal:\n"
        f'  curl -N "{base}/v1/events?token={token}"\n'
        "and in another:\n"
        f'  curl -X POST {base}/v1/publish -H "Authorization: Bearer {key}" '
        f"-H 'Content-Type: application/json' -d '{event}'\n"
    )


@app.command()
def publish(
    type: Annotated[str, typer.Option("--type", help="Event type, e.g. order.created")],
    data: Annotated[str, typer.Option(help="Event data as a JSON object")] = "{}",
    to_user: Annotated[
        list[str] | None, typer.Option("--to-user", help="Recipient user id (repeatable)")
    ] = None,
    to_role: Annotated[
        list[str] | None, typer.Option("--to-role", help="Recipient role (repeatable)")
    ] = None,
    to_topic: Annotated[list[str] | None, typer.Option("--to-topic", help="Topic (repeatable)")] = None,
    broadcast: Annotated[bool, typer.Option(help="Send to every stream")] = False,
    push: Annotated[str | None, typer.Option(help='"silent", "alert" or a JSON push spec')] = None,
    url: Annotated[
        str | None, typer.Option(help="Server base URL (default: TIDINGS_HOST:TIDINGS_PORT)")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Publish key (default: TIDINGS_PUBLISH_KEY)")] = None,
) -> None:
    """Publish one event through a running server's HTTP API; prints the assigned id."""
    import httpx

    settings = ensure_dev_secrets(settings_or_exit())
    try:
        event_data = json.loads(data)
        push_spec = None if push is None else (push if push in ("silent", "alert") else json.loads(push))
    except json.JSONDecodeError as exc:
        fail(f"--data/--push: not valid JSON: {exc}")
    audience = {
        "users": to_user or [],
        "roles": to_role or [],
        "topics": to_topic or [],
        "broadcast": broadcast,
    }
    event = {"type": type, "data": event_data, "to": audience, **({"push": push_spec} if push_spec else {})}
    base = url or settings.public_url or f"http://{settings.host}:{settings.port}"
    try:
        response = httpx.post(
            f"{base.rstrip('/')}/v1/publish",
            json=event,
            timeout=10,
            headers={"Authorization": f"Bearer {key or settings.publish_key}"},
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {base}: {exc}")
    if response.status_code >= 400:
        fail(f"{response.status_code}: {response.text}", code=1)
    typer.echo(response.json()["ids"][0])


@app.command()
def token(
    user: Annotated[str, typer.Option(help="The `sub` claim")],
    role: Annotated[list[str] | None, typer.Option(help="A role (repeatable)")] = None,
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds")] = 3600,
    jti: Annotated[str | None, typer.Option(help="A session id, for revocation")] = None,
) -> None:
    """Mint a development JWT (HS256 with TIDINGS_JWT_SECRET), for curl."""
    from ..auth import mint_token

    settings = ensure_dev_secrets(settings_or_exit())
    if not settings.jwt_secret:
        fail("tidings token mints HS256 tokens: set TIDINGS_JWT_SECRET (or run in development mode)")
    claims = {"jti": jti} if jti else {}
    typer.echo(mint_token(settings.jwt_secret, user, role or [], ttl=ttl, claims=claims))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"tidings {__version__} (Python {sys.version.split()[0]})")


def _add_groups() -> None:
    from importlib import import_module

    for name in ("db", "devices", "worker", "deliveries", "doctor", "vapid", "sandbox"):
        group = import_module(f"{__name__}.{name}")
        app.add_typer(group.app, name=name)


_add_groups()


def main() -> None:
    app()
