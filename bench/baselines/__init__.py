"""Baselines measured in the same run as tidings: ``naive`` (tutorial design), ``ceiling`` (raw asyncio).

Both speak tidings' protocol (see ``bench/protocol.py``) so one load generator measures all three.
"""
