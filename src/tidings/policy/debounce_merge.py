"""How held events are folded into one: the pending state of a debounce window and its merge.

Merge of `data` (top-level keys, in first-seen order): lists are unioned (order of first appearance kept,
duplicates dropped, at most `max_list_items` — the newest are kept and the field is named in `truncated`),
booleans are OR-ed, anything else (and a change of kind) takes the latest value. Keys missing from a later
event keep their earlier value. The event ids are kept too: the newest `max_ids`, with an exact `count`.

The state is plain JSON so the Redis backend can merge it inside a Lua script (`debounce_redis.py` mirrors
`merge` below, and one contract suite checks they agree). Values are stored as their JSON text, never as Lua
numbers: Lua's cjson keeps 14 significant digits and doubles, which would corrupt large ids. A list element
is compared by its canonical text (keys sorted), so `{"a":1,"b":2}` and `{"b":2,"a":1}` are one element.

    state = {"o": [field, ...], "f": {field: ["l", [text, ...]] | ["b", bool] | ["v", text]},
             "i": [event id, ...], "n": count, "t": [truncated field, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Merged:
    """What one delivery stands for: merged `data`, the events folded in (oldest first) and how many."""

    data: dict[str, Any]
    event_ids: tuple[str, ...]  # the newest `max_ids` of the events folded in, oldest first
    count: int  # exact, even when `event_ids` was cut
    truncated: tuple[str, ...] = ()  # fields whose list union was cut to `max_list_items` (newest kept)

    @property
    def latest_id(self) -> str:
        return self.event_ids[-1]


# Built once: json.dumps with options builds a new encoder per call, which was most of an offer's cost.
_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_sorted_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _canonical(value: Any) -> str:
    if type(value) is str:  # the common element (ids): skip the encoder's type dispatch
        return _text(value)
    return _sorted_text(value)


def encode_fields(data: Mapping[str, Any]) -> State:
    """An event's `data` in the state's field form (lists as canonical element texts)."""
    fields: dict[str, list[Any]] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise TypeError(f"debounced data must be a JSON object with string keys, not {name!r}")
        if isinstance(value, bool):
            fields[name] = ["b", value]
        elif isinstance(value, list | tuple):
            fields[name] = ["l", [_canonical(item) for item in value]]
        else:
            fields[name] = ["v", _text(value)]
    return {"o": list(data), "f": fields}


def empty_state() -> State:
    return {"o": [], "f": {}, "i": [], "n": 0, "t": []}


def _as_list(value: Any) -> list[Any]:
    # Lua's cjson writes an empty array as {}: read either as an empty list.
    return value if isinstance(value, list) else []


def _union(old: list[str], new: list[str], max_items: int) -> tuple[list[str], bool]:
    seen = set(old)
    out = list(old)
    for item in new:
        if item not in seen:
            seen.add(item)
            out.append(item)
    if len(out) > max_items:
        return out[-max_items:], True
    return out, False


def merge(state: State, incoming: State, event_id: str, *, max_list_items: int, max_ids: int) -> None:
    """Fold one event (`incoming` from `encode_fields`) into `state`, in place."""
    order, fields = _as_list(state["o"]), state["f"] if isinstance(state["f"], dict) else {}
    truncated = _as_list(state["t"])
    for name in _as_list(incoming["o"]):
        new = incoming["f"][name]
        old = fields.get(name)
        if old is None:
            order.append(name)
        if new[0] == "l":
            base = _as_list(old[1]) if old is not None and old[0] == "l" else []
            items, cut = _union(base, _as_list(new[1]), max_list_items)
            fields[name] = ["l", items]
            if cut and name not in truncated:
                truncated.append(name)
        elif new[0] == "b" and old is not None and old[0] == "b":
            fields[name] = ["b", bool(old[1]) or bool(new[1])]
        else:
            fields[name] = new
    ids = _as_list(state["i"])
    ids.append(event_id)
    if len(ids) > max_ids:
        del ids[0 : len(ids) - max_ids]
    state.update(o=order, f=fields, i=ids, n=int(state["n"]) + 1, t=truncated)


def decode(state: State) -> Merged:
    """The state as the data a delivery carries."""
    fields = state["f"] if isinstance(state["f"], dict) else {}
    data: dict[str, Any] = {}
    for name in _as_list(state["o"]):
        kind, value = fields[name]
        if kind == "l":
            data[name] = [json.loads(item) for item in _as_list(value)]
        elif kind == "b":
            data[name] = bool(value)
        else:
            data[name] = json.loads(value)
    return Merged(data, tuple(_as_list(state["i"])), int(state["n"]), tuple(_as_list(state["t"])))


def single(event_id: str, data: Mapping[str, Any]) -> Merged:
    """A delivery of one event on its own (the usual leading edge): its data untouched."""
    return Merged(dict(data), (event_id,), 1)
