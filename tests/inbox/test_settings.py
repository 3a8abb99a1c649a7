"""The TIDINGS_INBOX_* settings reach the store."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.config import Settings, load_settings
from tidings.errors import ConfigError
from tidings.inbox import InboxStore


def test_inbox_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_INBOX_RETENTION_DAYS", "7")
    monkeypatch.setenv("TIDINGS_INBOX_MAX_ITEMS_PER_USER", "250")
    monkeypatch.setenv("TIDINGS_INBOX_MAX_IDS_PER_REQUEST", "20")
    settings = load_settings(_env_file=None)
    assert (settings.inbox_retention_days, settings.inbox_max_items_per_user) == (7, 250)
    assert settings.inbox_max_ids_per_request == 20


def test_a_zero_cap_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_INBOX_MAX_ITEMS_PER_USER", "0")
    with pytest.raises(ConfigError, match="TIDINGS_INBOX_MAX_ITEMS_PER_USER"):
        load_settings(_env_file=None)


async def test_from_settings(engine: AsyncEngine) -> None:
    settings = Settings(_env_file=None, inbox_retention_days=3, inbox_max_items_per_user=9)  # type: ignore[call-arg]
    store = InboxStore.from_settings(engine, settings, clock=lambda: 0.0)
    assert (store.retention_days, store.max_items_per_user, store.max_ids_per_request) == (3, 9, 500)
