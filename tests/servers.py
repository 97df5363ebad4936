"""Servers a fault test owns and breaks: a PostgreSQL cluster of its own (``initdb``/``pg_ctl`` of the
installed PostgreSQL, a temporary folder, a free port) and a Redis server of its own (the embedded one,
``devstack.redis_server``, on a port that stays the same across restarts). Never the machine's shared ones."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg2

from devstack.redis_server import EmbeddedRedis
from tests.support import free_port


def postgres_bin() -> Path | None:
    """The folder of the installed PostgreSQL's server programs (None when there is none)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


class OwnPostgres:
    """A PostgreSQL cluster in a temporary folder on a free loopback port, started and stopped at will.

    PostgreSQL refuses to run as root: under root the cluster belongs to the ``postgres`` system user."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server programs (initdb, pg_ctl) installed")
        self.bin = bin_dir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="own-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid}
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([str(self.bin / program), *args], capture_output=True, text=True, timeout=120,
                                cwd=self.folder, **self._user)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> OwnPostgres:
        if self.running:
            return self
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=40"
                   " -c fsync=off -c shared_buffers=16MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when the server goes away."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        conn = psycopg2.connect(self.url(), connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class OwnRedis(EmbeddedRedis):
    """A Redis server of the test's own that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        super().__init__(port=free_port(), data_dir=Path(tempfile.mkdtemp(prefix="own-redis-")))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
