"""`tidings serve`: the standalone server — app factory, uvicorn protocol, process-wide tuning."""
