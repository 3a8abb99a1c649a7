"""`tidings vapid generate`: write a VAPID key pair and print the public key browsers need."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..push.vapid import VapidKey

app = typer.Typer(help="Web Push VAPID keys.", no_args_is_help=True)


@app.command()
def generate(
    path: Annotated[
        Path, typer.Option("--path", "-o", help="Where to write the private key (PEM, mode 0600).")
    ] = Path(".tidings/vapid_private.pem"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key.")] = False,
) -> None:
    """Write a new P-256 private key and print its public key (base64url) for `applicationServerKey`."""
    if path.exists() and not force:
        typer.echo(
            f"{path} exists; pass --force to replace it (existing subscriptions would stop working)", err=True
        )
        raise typer.Exit(1)
    key = VapidKey.generate()
    key.write(path)
    typer.echo(key.public_key)
    typer.echo(f"private key written to {path}; set TIDINGS_VAPID_PRIVATE_KEY_PATH={path}", err=True)
    typer.echo("and TIDINGS_VAPID_SUBJECT=mailto:<you@example.com>", err=True)


@app.command("public-key")
def public_key(path: Annotated[Path, typer.Argument(help="The private key file.")]) -> None:
    """Print the public key of an existing private key."""
    typer.echo(VapidKey.load(path).public_key)
