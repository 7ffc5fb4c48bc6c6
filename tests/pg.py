"""A throwaway PostgreSQL cluster for the tests: `initdb` + `pg_ctl` in a temp dir, on a free
loopback port, stopped at the end. Never a system service, never Docker.

`Cluster.start()` makes the cluster (as the `postgres` user when the tests run as root, since
PostgreSQL refuses to run as root); `new_database()` answers the URL of a fresh, empty database.
The cluster runs with `fsync = off`: the tests kill Glimpze processes, never PostgreSQL, so
nothing they check depends on the disk's flush (Glimpze still commits with
`synchronous_commit = on`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

# GLIMPZE_TEST_DATABASE=postgresql runs the suite's stores on PostgreSQL (.ci/run's second pass).
ON_POSTGRES = os.environ.get("GLIMPZE_TEST_DATABASE", "sqlite") == "postgresql"
# For tests of what only SQLite has (WAL, checkpoints, the file lock, the file's backup, PRAGMAs).
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's own behaviour (file, WAL, lock)")

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL server program (initdb, pg_ctl): on PATH or in Debian's directory."""
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"{name} not found: install PostgreSQL 15 (apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server for this test process."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="glimpze-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL will not run as root: the cluster belongs to the `postgres` user.
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> Cluster:
        run = [*self._as, pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        subprocess.run([*run, "--no-sync", "--no-instructions"], check=True, capture_output=True)
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
        )
        log = str(self.root / "server.log")
        subprocess.run(
            [*self._as, pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"],
            check=True,
            capture_output=True,
        )
        return self

    def new_database(self, template: str | None = None) -> str:
        """A fresh database, empty or a copy of `template` (a database's name); returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def migrated_template(self) -> str:
        """The name of a database holding Glimpze's newest schema, made once: copying it
        (`new_database(template=…)`) takes milliseconds where migrating takes a second."""
        name = "glimpze_template"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return name
            conn.execute(f'CREATE DATABASE "{name}"')
        from glimpze.store.pg_schema import migrate_postgres

        with psycopg.connect(self.url(name), autocommit=True) as conn:
            migrate_postgres(conn)
        return name

    def stop(self) -> None:
        subprocess.run(
            [*self._as, pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: Cluster | None = None


def cluster() -> Cluster:
    """This test process's cluster, started on first use (stopped by `stop_cluster`)."""
    global _cluster
    if _cluster is None:
        _cluster = Cluster().start()
    return _cluster


def stop_cluster() -> None:
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None


def fresh_database_url() -> str | None:
    """Under GLIMPZE_TEST_DATABASE=postgresql, a fresh database with the newest schema (a copy of
    a migrated template); else None (SQLite in the data dir)."""
    if not ON_POSTGRES:
        return None
    c = cluster()
    return c.new_database(template=c.migrated_template())


# The database each test's data dir stands for on PostgreSQL (its would-be SQLite file's path):
# helpers given a database file's path (conftest.row_counts, out_events) read there instead.
DATABASES: dict[Path, str] = {}


def database_for(data_dir: Path) -> str | None:
    """A fresh database for the test whose data dir this is (None on SQLite), remembered."""
    url = fresh_database_url()
    if url is not None:
        DATABASES[(data_dir / "glimpze.db").resolve()] = url
    return url


def query(db_path: Path | str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of `sql` (SQLite's `?` placeholders) from a test's database, either backend."""
    url = DATABASES.get(Path(db_path).resolve())
    if url is None:
        import sqlite3

        conn = sqlite3.connect(db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url) as pg:
        return pg.execute(sql.replace("?", "%s"), params).fetchall()


def table_names(db_path: Path | str) -> list[str]:
    if Path(db_path).resolve() in DATABASES:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return [str(row[0]) for row in query(db_path, sql)]


def stored_bytes(db_path: Path) -> bytes:
    """Everything the database holds, to look for what must not be stored (a secret): the file
    (and its WAL) on SQLite, every row as text on PostgreSQL."""
    if Path(db_path).resolve() not in DATABASES:
        return b"".join(p.read_bytes() for p in Path(db_path).parent.glob(Path(db_path).name + "*"))
    rows = [query(db_path, f'SELECT t::text FROM "{table}" t') for table in table_names(db_path)]
    return "\n".join(str(row[0]) for table in rows for row in table).encode()


@contextlib.contextmanager
def pg_write_locked(db_path: Path) -> Iterator[bool]:
    """On PostgreSQL, every table locked against writes (reads go on) meanwhile; yields False on
    SQLite (the caller takes SQLite's write lock)."""
    url = DATABASES.get(Path(db_path).resolve())
    if url is None:
        yield False
        return
    tables = ", ".join(f'"{t}"' for t in table_names(db_path))
    with psycopg.connect(url) as conn:
        conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        try:
            yield True
        finally:
            conn.rollback()
