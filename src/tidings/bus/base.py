"""The bus contract: carry encoded events to every process, assigning each a totally ordered id."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

Deliver = Callable[[bytes], None]
"""Called in the event loop with each bus message (`<id>\\n<type>\\n<channels>\\n<json>`), in id order, each once.
A bus that cannot deliver some (a lost subscription it could not catch up) says so in order instead: a control
message `tidings.gap` (`wire.gap_message`), after which every local stream must reset."""


class Bus(ABC):
    """One subscription per process; `publish` returns the ids it assigned, in order."""

    @abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Connect and begin delivering every published message to `deliver`."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering and release connections."""

    @abstractmethod
    async def publish(self, tails: Sequence[bytes]) -> list[str]:
        """Assign ids to message tails (`<type>\\n<channels>\\n<json>`) and send them; BusUnavailable if it can't."""

    @abstractmethod
    async def history(self, after: str, channels: Sequence[str]) -> list[bytes] | None:
        """Messages after id `after` on any of `channels`, oldest first, none beyond what this process's own
        subscription has delivered (so a replay meets the live stream without a duplicate); None whenever some
        may be missing (too old, trimmed, unknown id, history lost) — never an empty list for a gap."""

    @abstractmethod
    async def mark_revoked(self, jti: str, until: float) -> None:
        """Remember a revoked session id until epoch time `until`, for every process."""

    @abstractmethod
    async def is_revoked(self, jti: str) -> bool:
        """Whether a session id was revoked (and has not yet expired)."""

    @abstractmethod
    async def mark_user_revoked(self, user_id: str, at: float, until: float) -> None:
        """Refuse every token of `user_id` issued at or before epoch time `at`, until `until`, on every process."""

    @abstractmethod
    async def is_token_revoked(self, user_id: str, jti: str | None, issued_at: float | None) -> bool:
        """Whether a token was revoked, by its session id or by its user since it was issued (a token without an
        issue time counts as issued before any revocation of its user). One round trip to a broker."""

    @abstractmethod
    async def healthy(self) -> bool:
        """Whether the broker is reachable now."""

    def expire_history(self) -> int:
        """Forget history past its age limit; returns how many channels went. Brokers with TTLs need not."""
        return 0
