"""One run at a time per warehouse and state key: a PostgreSQL advisory lock or a file lock."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from etl.config import display_url
from etl.errors import DatabaseError, LockedError
from etl.load.engine import advisory_key

log = logging.getLogger(__name__)

_MESSAGE = (
    "another etl process loading this warehouse (run, backfill, load-file or "
    "reprocess-rejects) holds the lock for this state key {key}; wait for it to finish (a "
    "killed process releases its lock automatically)"
)


# The lock lives as long as its session: the server probes the client (engine.SERVER_KEEPALIVES,
# for every session), so the lock of a machine that died without closing the connection is gone
# within about a minute, not TCP's two hours. And a DBA's idle_session_timeout must not end the
# session of a run that is busy on its other connection.
_LOCK_SESSION_SETTINGS = (("idle_session_timeout", "0"),)


# The SQLite lock files this process holds. A POSIX record lock belongs to the process, not
# to the file handle: a second RunLock of the same file in this process (two pipelines in one
# Dagster process) would be granted it, and its release, or any close of the file, would drop
# the lock for both.
_HELD_FILES: set[Path] = set()
_HELD_FILES_LOCK = threading.Lock()


def _server_version(conn: Connection) -> tuple[int, ...]:
    return tuple(p for p in conn.dialect.server_version_info or (0,) if isinstance(p, int))


_LOST = (
    "the database session holding the run lock has ended (terminated, timed out or cut off), "
    "so another run could start alongside this one: the window was rolled back; run again"
)


# How long letting go of a lock waits for the server (RunLock.release).
RELEASE_WAIT: Final = 10


def _unlock(conn: Connection, key: str) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(key)})
        conn.commit()
    except SQLAlchemyError:
        _drop(conn)  # the session is gone, and its advisory lock went with it
    else:
        conn.close()


def _drop(conn: Connection) -> None:
    """Close a connection whose session may be gone, without returning it to any pool."""
    try:
        conn.invalidate()
        conn.close()
    except SQLAlchemyError:
        pass


class RunLock:
    """Held for the whole run; released by the OS or the server if the process dies."""

    def __init__(self, engine: Engine, key: str) -> None:
        self._engine = engine
        self._key = key
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._lost = False

    def acquire(self) -> None:
        if self._engine.dialect.name == "postgresql":
            self._acquire_postgres()
        else:
            self._acquire_file()

    def _acquire_postgres(self) -> None:
        # A session-level advisory lock lives exactly as long as this connection.
        try:
            conn = self._engine.connect()
            for name, value in _LOCK_SESSION_SETTINGS:
                if name != "idle_session_timeout" or _server_version(conn) >= (14,):
                    conn.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(self._key)}
            ).scalar()
            conn.commit()
        except DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise DatabaseError(
                f"taking the run lock in {display_url(self._engine.url)}: "
                f"the warehouse is unreachable ({detail}); nothing was loaded: check the "
                "database and run again"
            ) from None
        if not got:
            conn.close()
            raise LockedError(_MESSAGE.format(key=self._key[:12]))
        self._conn = conn

    def _acquire_file(self) -> None:
        database = make_url(str(self._engine.url)).database
        if not database or database == ":memory:":
            return
        path = Path(f"{database}.{self._key[:12]}.lock").resolve()
        with _HELD_FILES_LOCK:
            if path in _HELD_FILES:
                raise LockedError(_MESSAGE.format(key=self._key[:12]))
            _HELD_FILES.add(path)
        try:
            self._lock_file(path)
        except BaseException:
            with _HELD_FILES_LOCK:
                _HELD_FILES.discard(path)
            raise

    def _lock_file(self, path: Path) -> None:
        try:
            handle = path.open("a+b")
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the run lock file {path} next to the SQLite warehouse "
                f"({exc.strerror or type(exc).__name__}): check warehouse.url, and that its "
                "directory exists and is writable"
            ) from None
        try:
            # A POSIX record lock dies with the process, so SIGKILL never leaves a stale lock,
            # and unlike flock it is not shared with a forked child (the extract worker), which
            # would hold it for a killed parent until it noticed.
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            handle.close()
            raise LockedError(_MESSAGE.format(key=self._key[:12])) from None
        handle.truncate(0)
        handle.write(str(os.getpid()).encode())
        handle.flush()
        self._file = handle

    def ensure_held(self, where: str) -> None:
        """Raise DatabaseError if the session holding the advisory lock has ended (terminated,
        timed out, network cut): the lock ended with it, so another run may have started.
        Once lost, it stays lost: every later check raises too."""
        if self._lost:
            raise DatabaseError(f"{where}: {_LOST}")
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
        except DBAPIError:
            self._discard()
            self._lost = True
            raise DatabaseError(f"{where}: {_LOST}") from None

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _drop(conn)

    def release(self, *, remove: bool = False) -> None:
        """Let go of the lock; `remove`: also delete its file (a lock no one takes again).

        A server that no longer answers (stuck on I/O, frozen) is waited for RELEASE_WAIT
        seconds only: the run must end, with its exit status, for anyone to be alerted; the
        lock then ends with this process's connection to it.
        """
        if self._conn is not None:
            conn, self._conn = self._conn, None
            worker = threading.Thread(
                target=_unlock, args=(conn, self._key), name="etl-unlock", daemon=True
            )
            worker.start()
            worker.join(RELEASE_WAIT)
            if worker.is_alive():
                log.warning(
                    "the warehouse did not answer within %d s while a lock was let go; it ends "
                    "with this process",
                    RELEASE_WAIT,
                )
        if self._file is not None:
            path = Path(self._file.name)
            if remove:  # before unlocking: whoever opens it next finds a new file
                path.unlink(missing_ok=True)
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
            with _HELD_FILES_LOCK:
                _HELD_FILES.discard(path)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
