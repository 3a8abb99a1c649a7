"""Alembic migrations shipped with the package; run them with `tidings db upgrade` or `tidings.db.upgrade()`."""
