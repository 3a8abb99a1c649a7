"""The counts cache: an entry is served until one of its reader's channels changes, never when a change landed
while it was being counted, and not past its expiry (a mute ending, the ttl); a gap clears everything."""

from __future__ import annotations

from support import ManualClock
from tidings.inbox import Counts, Reader
from tidings.inbox.cache import CountsCache

ANN = Reader("ann", frozenset({"staff"}), frozenset({"t"}))
ONE, TWO = Counts(1, 1), Counts(2, 2)


def cache(clock: ManualClock, **options: int) -> CountsCache:
    return CountsCache(clock=clock, ttl=30, **options)


def test_an_entry_is_served_until_a_channel_of_its_reader_changes() -> None:
    c = cache(ManualClock(frozen_at=1000.0))
    c.put(ANN, ONE, c.begin())
    c.changed(["u:bob", "r:other", "t:other"])  # not hers
    assert c.get(ANN) == ONE
    for channel in ("u:ann", "r:staff", "t:t", "*"):
        c.put(ANN, ONE, c.begin())
        c.changed([channel])
        assert c.get(ANN) is None, channel


def test_a_count_that_was_running_when_a_change_landed_is_not_served() -> None:
    c = cache(ManualClock(frozen_at=1000.0))
    started = c.begin()
    c.changed(["u:ann"])  # committed while the count ran: its snapshot may predate it
    c.put(ANN, ONE, started)
    assert c.get(ANN) is None
    c.put(ANN, TWO, c.begin())  # a count begun after the change is good
    assert c.get(ANN) == TWO


def test_entries_expire_at_their_validity_or_the_ttl() -> None:
    clock = ManualClock(frozen_at=1000.0)
    c = cache(clock)
    c.put(ANN, ONE, c.begin(), valid_until=1010.0)  # a mute ends at 1010
    clock.advance(9.9)
    assert c.get(ANN) == ONE
    clock.advance(0.1)
    assert c.get(ANN) is None
    c.put(ANN, ONE, c.begin())
    clock.advance(29.9)
    assert c.get(ANN) == ONE
    clock.advance(0.1)
    assert c.get(ANN) is None


def test_a_clear_forgets_everything_and_counts_that_were_running() -> None:
    c = cache(ManualClock(frozen_at=1000.0))
    started = c.begin()
    c.put(ANN, ONE, started)
    c.clear()
    assert c.get(ANN) is None
    c.put(ANN, ONE, started)
    assert c.get(ANN) is None


def test_memory_is_bounded_in_readers_and_in_changed_channels() -> None:
    c = cache(ManualClock(frozen_at=1000.0), max_entries=3, max_channels=5)
    readers = [Reader(f"u{n}") for n in range(5)]
    for reader in readers:
        c.put(reader, ONE, c.begin())
    assert len(c) == 3 and c.get(readers[0]) is None and c.get(readers[4]) == ONE
    c.put(ANN, ONE, c.begin())
    c.changed([f"u:x{n}" for n in range(6)])  # over the bound: forgotten, and so counted as changed for all
    assert c.get(ANN) is None
    c.put(ANN, TWO, c.begin())
    assert c.get(ANN) == TWO
