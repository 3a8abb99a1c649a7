"""Alembic migrations shipped with the package; run by `tidings db upgrade` or `tidings.db.upgrade()`.

There is no alembic.ini: `tidings.db.alembic_config()` points Alembic here. To write the next revision, change
`tidings/registry/tables.py` (or another module's tables on `tidings.db.metadata`) and autogenerate against a
database at head, then review the file and give it the next number (`0002_...`):

    from alembic import command
    from tidings import db
    cfg = db.alembic_config()
    cfg.set_main_option("sqlalchemy.url", "sqlite+aiosqlite:///scratch.db")  # upgraded to head first
    command.revision(cfg, message="what changed", autogenerate=True, rev_id="0002")

tests/registry/test_migrations.py runs `alembic check` on SQLite and PostgreSQL, so a table changed without a
migration fails the suite.
"""
