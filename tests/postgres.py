"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, postgres on a loopback port.

Debian's server binaries (package ``postgresql``, installed by run.sh) under /usr/lib/postgresql.
PostgreSQL refuses to run as root, so under root (CI) the server runs as the ``postgres`` OS user
the package creates; its folder is made for that user and removed at the end, whatever happened.
Each test (or cluster) gets a database of its own with :meth:`PostgresServer.new_database`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gochat_py.launcher import port_open

_numbers = itertools.count(1)


def postgres_bin() -> Path:
    """The newest installed server version's bin folder."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name.split(".")[0])
    )
    if not found:
        raise RuntimeError("PostgreSQL is not installed: ./run.sh test installs the Debian package postgresql")
    return found[-1].parent


class PostgresServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="gochat-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    def _run(self, *argv: str) -> None:
        result = subprocess.run(argv, user=self.user, cwd=self.root, capture_output=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout.decode()}{result.stderr.decode()}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", str(self.root), "-F", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
                 "-c", "max_connections=200"],
                user=self.user, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(log)
        deadline = time.monotonic() + 60
        while not self._accepting():  # the port opens before the server takes connections
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def _accepting(self) -> bool:
        if not port_open(f"127.0.0.1:{self.port}"):
            return False
        ready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        return subprocess.run(ready, timeout=10, cwd="/").returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True, text=True, timeout=60, cwd="/",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {result.stderr}")
        return result.stdout.strip()

    def new_database(self, prefix: str = "gochat") -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: fast shutdown, clients are cut off
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres(port: int) -> Iterator[PostgresServer]:
    server = PostgresServer(port)
    try:
        yield server.start()
    finally:
        server.stop()
