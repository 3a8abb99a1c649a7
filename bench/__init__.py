"""Reproducible benchmarks: tidings against two baselines (naive FastAPI SSE and a raw-asyncio ceiling).

Run ``python -m bench --quick`` for a smoke pass or ``python -m bench`` for the full suite; see
``bench/README.md``.
"""
