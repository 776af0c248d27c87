"""A throwaway PostgreSQL cluster for tests: ``initdb`` in a temp dir, served on 127.0.0.1 and a private socket.

    with throwaway_cluster() as pg:      # PgCluster
        url = pg.url

PostgreSQL refuses to run as root, so under root the server binaries run as an unprivileged system user
(``postgres``, else ``nobody``) that owns the temp dir. The superuser authenticates by ``trust`` on the
private unix socket only; the application role gets a password and connects over TCP (scram-sha-256), as a
real deployment would. The cluster is stopped (``pg_ctl stop -m fast``) and its directory removed on exit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_BIN_ENV = "KOTONE_PG_BIN"
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
_RUN_AS_CANDIDATES = ("postgres", "nobody")


def find_pg_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: ``$KOTONE_PG_BIN``, the PG 15 default, or PATH."""
    candidates = [Path(p) for p in (os.environ.get(PG_BIN_ENV), str(DEFAULT_PG_BIN)) if p]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    return next((c for c in candidates if all((c / b).is_file() for b in SERVER_BINARIES)), None)


def missing_reason() -> str | None:
    """Why no cluster can be started here, or None when one can."""
    if find_pg_bin() is None:
        return f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) not found: set {PG_BIN_ENV}"
    if os.geteuid() == 0 and _run_as_user() is None:
        return "running as root and no unprivileged user (postgres, nobody) to run the PostgreSQL server as"
    return None


def _run_as_user() -> pwd.struct_passwd | None:
    for name in _RUN_AS_CANDIDATES:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class PgCluster:
    host: str
    port: int
    socket_dir: Path
    data_dir: Path
    db_name: str
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.username}:{self.password}@{self.host}:{self.port}/{self.db_name}"

    def env(self) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables the Postgres storage block of the instance reads."""
        return {
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_DB": self.db_name,
            "DAGSTER_PG_PORT": str(self.port),
        }


class _Runner:
    """Runs server binaries as the unprivileged owner of the cluster directory (root) or as ourselves."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user = _run_as_user() if os.geteuid() == 0 else None

    def chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def __call__(self, binary: str, *args: str, timeout: float = 60) -> str:
        cmd = [str(self.bin_dir / binary), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user.pw_name, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout


@contextmanager
def throwaway_cluster(
    db_name: str = "dagster", username: str = "dagster", password: str = "dagster-pw"
) -> Iterator[PgCluster]:
    """Start a fresh cluster with one database owned by a password role; stop and delete it on exit."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError(missing_reason())
    run = _Runner(bin_dir)
    # Short path under /tmp: unix socket paths are limited to ~107 bytes, and pytest's tmp dirs are
    # root-only (0700), which the unprivileged server user could not enter.
    root = Path(tempfile.mkdtemp(prefix="kpg-", dir="/tmp"))
    data_dir, log_file = root / "data", root / "server.log"
    port = free_port()
    try:
        run.chown(root)
        run(
            "initdb", "-D", str(data_dir), "-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        try:
            run("pg_ctl", "-D", str(data_dir), "-l", str(log_file), "-w", "-t", "30", "-o", options, "start")
        except RuntimeError as err:
            log = log_file.read_text(errors="replace")[-2000:] if log_file.is_file() else ""
            raise RuntimeError(f"{err}\nserver log:\n{log}") from None
        _create_role_and_db(root, port, db_name, username, password)
        yield PgCluster("127.0.0.1", port, root, data_dir, db_name, username, password)
    finally:
        # A postmaster.pid means a server may be up, even when `pg_ctl start` itself reported failure.
        if (data_dir / "postmaster.pid").exists():
            run("pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _create_role_and_db(socket_dir: Path, port: int, db_name: str, username: str, password: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host=str(socket_dir), port=port, user=SUPERUSER, dbname="postgres")
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(username)), [password])
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db_name), sql.Identifier(username))
            )
    finally:
        conn.close()
