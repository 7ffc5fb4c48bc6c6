"""The one place a store is built from the configuration: SQLite (the default) or PostgreSQL
(`[database] url = "postgresql://…"`). The server, the CLI commands and the tests all call
`open_store`; PostgreSQL's driver is imported only when it is chosen."""

from __future__ import annotations

from glimpze.config import Config
from glimpze.store.database import Database
from glimpze.store.sql import Store


def open_store(config: Config) -> Store:
    """The store `config` names, not yet opened (`await store.open()`)."""
    url = config.postgres_url
    if url is None:
        return Database(config.db_path, synchronous=config.synchronous)
    try:
        from glimpze.store.postgres import PgDatabase
    except ImportError as exc:  # the optional driver is missing
        from glimpze.store.database import StorageError

        raise StorageError(
            f"[database] url names PostgreSQL, but its driver is not installed ({exc.name}): "
            "pip install 'glimpze[postgres]'"
        ) from None
    return PgDatabase(url)
