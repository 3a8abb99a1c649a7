"""Alembic migrations shipped with the package; run by `tidings db upgrade` or `tidings.db.upgrade()`."""
