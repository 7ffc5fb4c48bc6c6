"""PostgreSQL's schema: the same tables, columns and indexes as SQLite's after every migration,
made once under an advisory lock, and refused when it is newer than this Glimpze. Runs on a
throwaway cluster (tests/pg.py) in either pass of the suite."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import psycopg
import pytest

from glimpze.config import Config, load
from glimpze.ops.backup import BackupError, backup, check
from glimpze.store.database import StorageError, connect, migrate
from glimpze.store.migrations import MIGRATIONS
from glimpze.store.pg_schema import BASELINE_VERSION, PG_STEPS, migrate_postgres, schema_version
from glimpze.store.postgres import PgDatabase
from tests.pg import cluster, pg_bin

try:
    pg_bin("initdb")
except FileNotFoundError:  # .ci/run installs PostgreSQL; a bare machine may not have it
    pytest.skip("PostgreSQL is not installed", allow_module_level=True)

# SQLite's declared types and PostgreSQL's for the same column.
TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea", "ANY": "text"}


def sqlite_schema(tmp_path: Path) -> tuple[dict[str, dict[str, str]], set[str]]:
    conn = connect(tmp_path / "s.db")
    migrate(conn)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    columns = {t: {r["name"]: TYPES[r["type"]] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    conn.close()
    return columns, indexes


def postgres_schema(url: str) -> tuple[dict[str, dict[str, str]], set[str]]:
    with psycopg.connect(url) as conn:
        columns: dict[str, dict[str, str]] = {}
        for table, column, kind in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'"
        ):
            if column != "rowid":  # SQLite's is implicit (pg_schema.py)
                columns.setdefault(table, {})[column] = kind
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                "AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'"
            )
        }
    return columns, indexes


def on_postgres(tmp_path: Path, url: str) -> Config:
    (tmp_path / "glimpze.toml").write_text("")
    return load(tmp_path / "glimpze.toml", env={"GLIMPZE_DATABASE_URL": url}, overrides={"data_dir": str(tmp_path)})


def test_postgres_has_sqlite_s_tables_columns_and_indexes(tmp_path: Path) -> None:
    url = cluster().new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate_postgres(conn) == len(MIGRATIONS)
        assert schema_version(conn) == len(MIGRATIONS)
    assert postgres_schema(url) == sqlite_schema(tmp_path)


def test_every_migration_after_the_baseline_has_a_postgres_step() -> None:
    assert sorted(PG_STEPS) == list(range(BASELINE_VERSION + 1, len(MIGRATIONS) + 1))


def test_processes_starting_together_migrate_once() -> None:
    url = cluster().new_database()
    reached: list[int] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                reached.append(migrate_postgres(conn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and reached == [len(MIGRATIONS)] * 4
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'schema_version'").fetchone() == (1,)


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    url = cluster().new_database(template=cluster().migrated_template())
    newer = len(MIGRATIONS) + 1
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(newer),))

    async def start() -> None:
        async with PgDatabase(url):
            pass

    with pytest.raises(StorageError, match=f"schema version {newer}, newer than this Glimpze"):
        asyncio.run(start())
    config = on_postgres(tmp_path, url)
    report = check(config)
    assert f"database: schema {newer} is newer than this Glimpze's" in report.problems[0]


def test_check_reports_postgresql_and_its_queue(tmp_path: Path) -> None:
    url = cluster().new_database(template=cluster().migrated_template())
    config = on_postgres(tmp_path, url)
    report = check(config)
    assert report.sound, report.problems
    assert report.lines()[:2] == ["integrity: ok", "queue: 0 pending, 0 leased"]
    assert report.lines()[-1] == "database: postgresql"
    with pytest.raises(BackupError, match="pg_dump"):
        backup(config, tmp_path / "backup")


def test_check_names_an_unreachable_database(tmp_path: Path) -> None:
    url = cluster().url("no_such_database")
    config = on_postgres(tmp_path, url)
    report = check(config)
    assert not report.sound and report.lines()[0] == "integrity: not checked (cannot reach the database)"
    assert "no_such_database" in report.problems[0]


def test_a_second_server_on_one_postgresql_database_refuses_to_start(tmp_path: Path) -> None:
    """Several processes cannot share one database yet: the second is refused, as on one data dir."""
    from tests.server import Server, free_port, run_cli

    url = cluster().new_database(template=cluster().migrated_template())
    (tmp_path / "a").mkdir()
    first = Server(tmp_path / "a", env={"GLIMPZE_DATABASE_URL": url})
    first.start()
    try:
        second = run_cli(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            data=tmp_path / "b",
            env={"GLIMPZE_DATABASE_URL": url},
            timeout=30,
        )
        assert second.returncode == 1
        assert "is in use by another Glimpze server" in second.stderr, second.stderr
        first.kill()  # the lock goes with the killed server's session: a restart is not refused
        first.start()
    finally:
        first.kill()
