"""What every `tidings` command shares: load the settings or exit 2 naming the variable; fail with a message."""

from __future__ import annotations

from typing import NoReturn

import typer

from ..config import Settings, load_settings
from ..errors import ConfigError


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    """Settings from the environment; a message naming the variable and exit 2 when they are invalid."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        fail(f"tidings: {exc}")
