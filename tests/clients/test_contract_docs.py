"""The device-side contract in docs/clients/ equals what the providers build, so the documents cannot drift.

Every fenced block tagged `json contract:<case>:<kind>` is checked. The `event` kind is the published event (a
valid `POST /v1/publish` body). Each other kind is rebuilt from that event by the providers' own `prepare()`
(which call `tidings.push.payloads`), at the documented event id and publish time, and must be equal as JSON.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tidings.events import EventIn
from tidings.push.apns import ApnsProvider
from tidings.push.base import Notification
from tidings.push.fcm import FcmProvider
from tidings.push.webpush import WebPushProvider

DOCS = Path(__file__).resolve().parents[2] / "docs" / "clients"
EVENT_ID = "1795333882889-0"  # the docs say: every example has this event id ...
PUBLISHED_AT = 1_795_333_882  # ... and was built at this time (2026-11-22T07:51:22Z)
FCM_TOKEN = "<FCM registration token>"
BLOCK = re.compile(r"^([ \t]*)```json contract:([a-z0-9-]+):([a-z-]+)[ \t]*\n(.*?)^\1```", re.M | re.S)
REQUIRED = {  # what each document must keep checking, whatever else it shows
    "ios-macos.md": {"apns-headers", "apns-payload"},
    "android-fcm.md": {"fcm-message"},
    "browser.md": {"webpush-headers", "webpush-payload"},
}


@dataclass(frozen=True)
class Block:
    doc: str
    case: str
    kind: str
    value: Any

    def __str__(self) -> str:
        return f"{self.doc}:{self.case}:{self.kind}"


def parse(doc: str, text: str) -> list[Block]:
    return [
        Block(doc, m.group(2), m.group(3), json.loads(textwrap.dedent(m.group(4))))
        for m in BLOCK.finditer(text)
    ]


def all_blocks() -> list[Block]:
    return [b for path in sorted(DOCS.glob("*.md")) for b in parse(path.name, path.read_text())]


def events_by_case(blocks: list[Block]) -> dict[str, dict[str, Any]]:
    events: dict[str, dict[str, Any]] = {}
    for block in blocks:
        if block.kind == "event":
            assert events.setdefault(block.case, block.value) == block.value, (
                f"{block} differs between documents"
            )
    return events


@pytest.fixture
async def providers() -> AsyncIterator[dict[str, Any]]:
    clock: Callable[[], float] = lambda: float(PUBLISHED_AT)  # noqa: E731
    built = {
        "apns": ApnsProvider(key_pem=None, key_id="", team_id="", topic="com.example.app", clock=clock),
        "fcm": FcmProvider(service_account_info=None, project_id="example", clock=clock),
        "webpush": WebPushProvider(vapid_key=None, subject="", clock=clock),
    }
    yield built
    for provider in built.values():
        await provider.aclose()


def build(kind: str, event: dict[str, Any], providers: dict[str, Any]) -> Any:
    """What the provider sends for this event: the document's `kind` of it."""
    parsed = EventIn.model_validate(event)
    assert parsed.push is not None, "a contract example needs a push"
    note = Notification(event_id=EVENT_ID, event_type=parsed.type, spec=parsed.push, data=parsed.data)
    if kind == "apns-headers":
        return providers["apns"].prepare(note).headers
    if kind == "apns-payload":
        return json.loads(providers["apns"].prepare(note).payload)
    if kind == "fcm-message":  # the provider splices each device's token into the message it encoded once
        tail = providers["fcm"].prepare(note).tail
        return json.loads(b'{"message":{"token":' + json.dumps(FCM_TOKEN).encode() + b"," + tail + b"}")
    if kind == "webpush-headers":
        return providers["webpush"].prepare(note).headers
    if kind == "webpush-payload":
        return json.loads(providers["webpush"].prepare(note).plaintext)
    raise AssertionError(f"unknown contract kind {kind!r}")


def check(blocks: list[Block], providers: dict[str, Any]) -> int:
    events = events_by_case(blocks)
    checked = 0
    for block in blocks:
        if block.kind == "event":
            continue
        assert block.case in events, f"{block}: no `json contract:{block.case}:event` block in docs/clients/"
        assert block.value == build(block.kind, events[block.case], providers), f"{block} drifted"
        checked += 1
    return checked


async def test_documented_payloads_equal_what_the_providers_build(providers: dict[str, Any]) -> None:
    blocks = all_blocks()
    assert check(blocks, providers) >= 12


def test_every_document_keeps_its_checked_examples() -> None:
    blocks = all_blocks()
    for doc, kinds in REQUIRED.items():
        in_doc = {(b.case, b.kind) for b in blocks if b.doc == doc}
        cases = {case for case, _ in in_doc}
        assert len(cases) >= 2, f"{doc} shows fewer than two checked cases"
        for case in cases:
            for kind in kinds:
                assert (case, kind) in in_doc, f"{doc}: case {case} lacks its {kind} block"
    modes = {json.dumps(b.value["push"]) if isinstance(b.value["push"], str) else b.value["push"]["mode"]
             for b in blocks if b.kind == "event"}  # fmt: skip
    assert modes >= {'"silent"', "alert"}, "the documents must show a silent and an alert push"


def test_documented_events_are_valid_publish_bodies() -> None:
    for event in events_by_case(all_blocks()).values():
        EventIn.model_validate(event)


async def test_a_drifted_example_is_caught(providers: dict[str, Any]) -> None:
    """The check can fail: a document whose payload no longer matches the provider is refused."""
    text = (DOCS / "ios-macos.md").read_text()
    block = re.search(r"```json contract:tasks-silent:apns-payload\n.*?```", text, re.S)
    assert block is not None
    edited = block.group(0).replace('"content-available": 1', '"content-available": 1, "sound": "default"')
    drifted = text.replace(block.group(0), edited)
    assert drifted != text
    with pytest.raises(AssertionError, match="drifted"):
        check(parse("ios-macos.md", drifted), providers)
