"""Time as a dependency: everything that decides by time takes a `Clock`, so tests control time.

A clock returns epoch seconds (wall time, like `time.time`). One clock is injected into the hub and handed to
the bus, history, router, connections, stores and policy, so no two parts can disagree about "now".
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

system_clock: Clock = time.time
