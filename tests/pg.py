"""A throwaway PostgreSQL cluster for the tests: `initdb` + `pg_ctl` in a temp dir, on a free
loopback port, stopped at the end. Never a system service, never Docker.

`Cluster.start()` makes the cluster (as the `postgres` user when the tests run as root, since
PostgreSQL refuses to run as root); `new_database()` answers the URL of a fresh, empty database.
The cluster runs with `fsync = off`: the tests kill Glimpze processes, never PostgreSQL, so
nothing they check depends on the disk's flush (Glimpze still commits with
`synchronous_commit = on`).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

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

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self._as, pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
