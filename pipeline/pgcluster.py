"""A throwaway PostgreSQL cluster in a temporary folder, for tests and benchmarks.

``initdb`` makes the cluster, ``pg_ctl`` starts it listening on a unix socket inside the folder
only (no TCP port: nothing else can reach it), and stopping it removes the folder. The binaries
are found on PATH or in Debian's ``/usr/lib/postgresql/*/bin``. PostgreSQL refuses to run as
root, so under root the cluster runs as the ``postgres`` (or ``nobody``) account.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from pipeline.errors import QcodeError


class ClusterError(QcodeError):
    """A throwaway PostgreSQL cluster cannot be made."""

    code = "E610"
    fix = (
        "Install PostgreSQL (on Debian: apt-get install postgresql) so that initdb and pg_ctl "
        "are on PATH or under /usr/lib/postgresql/*/bin."
    )


def find_binary(name: str) -> str | None:
    """``initdb``, ``pg_ctl``, ``pg_dump``...: on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def _account() -> tuple[str | None, int | None, int | None]:
    """(user to run as, uid, gid) when we are root, else (None, None, None)."""
    if os.geteuid() != 0:
        return None, None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, entry.pw_uid, entry.pw_gid
    raise ClusterError("running as root and there is no 'postgres' or 'nobody' account to use")


class Cluster:
    """``with Cluster() as pg: pg.url("dbname")``."""

    def __init__(self) -> None:
        missing = [b for b in ("initdb", "pg_ctl") if find_binary(b) is None]
        if missing:
            raise ClusterError(
                f"PostgreSQL's {' and '.join(missing)} not found on PATH or in "
                "/usr/lib/postgresql/*/bin: install Debian's 'postgresql' package"
            )
        # Short path: a unix socket's path must stay under ~100 characters.
        self.folder = Path(tempfile.mkdtemp(prefix="qpg"))
        self.data = self.folder / "data"
        self.user, uid, gid = _account()
        if uid is not None:
            os.chown(self.folder, uid, gid)  # type: ignore[arg-type]
        self.started = False

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ClusterError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> Cluster:
        self._run(
            find_binary("initdb") or "initdb",
            "-D",
            str(self.data),
            "-U",
            "qcode",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        options = f"-k {self.folder} -c listen_addresses='' -c max_connections=200"
        self._run(
            find_binary("pg_ctl") or "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "start",
        )
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://qcode@/{database}?host={quote(str(self.folder), safe='/')}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self._run(find_binary("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", "fast", "stop")
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
