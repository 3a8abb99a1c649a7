"""The `tidings` command: thin — parse, call, print."""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Annotated, NoReturn

import typer

from .. import __version__
from ..config import Settings, load_settings
from ..errors import ConfigError

app = typer.Typer(
    help="tidings: a notification hub (SSE streams, APNs, FCM, Web Push).", no_args_is_help=True
)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    """Settings from the environment with dev secrets filled in; a clear message and exit 2 when invalid."""
    from ..devmode import ensure_dev_secrets

    try:
        return ensure_dev_secrets(load_settings(**overrides))
    except ConfigError as exc:
        fail(str(exc))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (TIDINGS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TIDINGS_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes; more than one needs a redis:// bus")] = 1,
) -> None:
    """Run the hub as a standalone server."""
    import uvicorn

    from ..app import create_app
    from ..hub import Hub
    from ..logs import configure_logging

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings_or_exit(**overrides)
    if workers > 1 and not settings.uses_redis:
        fail("--workers > 1 needs a shared bus: set TIDINGS_BUS_URL=redis://...")
    configure_logging(settings)
    if settings.is_development:
        typer.echo(_walkthrough(settings), err=True)
    common = {
        "host": settings.host,
        "port": settings.port,
        "backlog": 4096,
        "log_config": None,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds) + 2,
        "access_log": False,
        "http": HTTP_PROTOCOL,
    }
    if workers == 1:
        uvicorn.Server(uvicorn.Config(create_app(Hub(settings)), **common)).run()  # type: ignore[arg-type]
        return
    _multiprocess_metrics_dir(settings)
    for key, value in overrides.items():
        os.environ[f"TIDINGS_{key.upper()}"] = str(value)
    uvicorn.run("tidings.app:create_app", factory=True, workers=workers, **common)  # type: ignore[arg-type]


HTTP_PROTOCOL = "tidings.streams.protocol:TidingsHttpProtocol"  # httptools + the socket for streams


def _multiprocess_metrics_dir(settings: Settings) -> None:
    """prometheus_client's multiprocess mode: a fresh directory shared by this run's workers."""
    path = (settings.data_dir / "metrics").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _walkthrough(settings: Settings) -> str:
    from ..auth import mint_token

    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    token = (
        mint_token(settings.jwt_secret, "alice", ["admin"], ttl=86_400) if settings.jwt_secret else "<JWT>"
    )
    event = json.dumps({"type": "order.created", "data": {"order_id": 1}, "to": {"users": ["alice"]}})
    return (
        "\ntidings (development mode). Try it — in one terminal:\n"
        f"  curl -N '{base}/v1/events?token={token}'\n"
        "and in another:\n"
        f"  curl -X POST {base}/v1/publish -H 'Authorization: Bearer {settings.publish_key}' "
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

    settings = settings_or_exit()
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

    settings = settings_or_exit()
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
