"""Thin FastAPI routers; the logic lives in the hub and the modules it wires."""
