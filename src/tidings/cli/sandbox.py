"""`tidings sandbox`: local APNs, FCM and Web Push servers that behave like the real services."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run local APNs / FCM / Web Push sandboxes.", invoke_without_command=True)


@app.callback()
def sandbox(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the sandbox keys and sandbox.env live.")
    ] = Path(".tidings/sandbox"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    apns_port: Annotated[int, typer.Option(help="APNs HTTP/2 port (0: any free port).")] = 2197,
    apns_control_port: Annotated[int, typer.Option(help="APNs control port (HTTP/1.1).")] = 2198,
    fcm_port: Annotated[int, typer.Option(help="FCM messages:send port (HTTP/2).")] = 8470,
    fcm_control_port: Annotated[int, typer.Option(help="FCM token endpoint and control (HTTP/1.1).")] = 8471,
    webpush_port: Annotated[int, typer.Option(help="Web Push endpoints port (HTTP/2).")] = 8472,
    webpush_control_port: Annotated[int, typer.Option(help="Web Push control, HTTP/1.1 endpoints.")] = 8473,
) -> None:
    """Start all three sandboxes, print their URLs and the TIDINGS_* variables that point tidings at them."""
    from ..sandbox.run import serve

    asyncio.run(
        serve(
            directory,
            typer.echo,
            host=host,
            apns_port=apns_port,
            control_port=apns_control_port,
            fcm_port=fcm_port,
            fcm_control_port=fcm_control_port,
            webpush_port=webpush_port,
            webpush_control_port=webpush_control_port,
        )
    )
