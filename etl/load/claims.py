"""The window ledger (`etl_windows`): windows claimed through the warehouse.

Several processes (or threads, or machines) load one range at once by claiming its windows one
by one: a window is loaded by one holder at a time, the others go on to the next. A holder is
one process; it proves it is alive by a lock of its own that dies with it (a PostgreSQL
session's advisory lock, or a POSIX lock on a file beside the SQLite file), and by a heartbeat
written to its claims. Another process takes a claim over when its holder's lock is free (it
died: SIGKILL, power loss) or when its heartbeat is older than `pipeline.claim_timeout` (it is
frozen, or cut off from the warehouse). A holder commits a window only while it still holds the
claim: `loaded` checks that in the window's own transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, MetaData, and_, func, select, text
from sqlalchemy.exc import DBAPIError

from etl.errors import DatabaseError, LockedError
from etl.load.engine import begin_write, dialect_insert
from etl.load.lock import RELEASE_WAIT, RunLock
from etl.load.schema import table_of
from etl.secrets import scrub
from etl.windows import Window

log = logging.getLogger("etl.pipeline")

# etl_windows.state
CLAIMED: Final = "claimed"  # a holder is loading it
LOADED: Final = "loaded"  # its last load committed
# its last load failed or was interrupted (an earlier one may have committed: committed_at)
FAILED: Final = "failed"


def holder_name(run_id: str) -> str:
    """What etl_windows.claimed_by says of this process: host, pid and run."""
    return f"{socket.gethostname()}:{os.getpid()}:{run_id[:12]}"


def _liveness_key(holder: str) -> str:
    return hashlib.sha256(f"holder:{holder}".encode()).hexdigest()[:32]


def _session_name(holder: str) -> str:
    """The application_name of a holder's window sessions (within PostgreSQL's 63 bytes)."""
    return f"convo-etl window {_liveness_key(holder)[:24]}"


@dataclass(frozen=True)
class Held:
    """Why a window was not claimed: another holder has it, or loaded it during this run."""

    reason: str


class WindowLedger:
    """This process's claims on one state key's windows; `start()` before the first claim.

    Thread-safe: the window threads of one run share one ledger (one holder).
    """

    def __init__(
        self,
        engine: Engine,
        metadata: MetaData,
        *,
        key: str,
        run_id: str,
        timeout: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._table = table_of(metadata, "etl_windows")
        self._key = key
        self._run_id = run_id
        self.holder = holder_name(run_id)
        self._timeout = timeout
        self._clock = clock
        self._started_at = clock()
        self._liveness = RunLock(engine, _liveness_key(self.holder))
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._probing = threading.Lock()
        self._checking = threading.Lock()
        self._gone: set[str] = set()

    # -- the holder's life ---------------------------------------------------------------------

    def start(self) -> None:
        """Take this holder's liveness lock and start the heartbeat."""
        self._liveness.acquire()
        interval = max(1.0, self._timeout.total_seconds() / 5)
        self._heartbeat = threading.Thread(
            target=self._beat, args=(interval,), name="etl-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def stop(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            # A beat in a statement the server never answers is not waited for: see
            # RunLock.release.
            self._heartbeat.join(RELEASE_WAIT)
        self._liveness.release(remove=True)

    def _beat(self, interval: float) -> None:
        table = self._table
        keys = (table.c.state_key, table.c.window_start, table.c.window_end)
        while not self._stop.wait(interval):
            try:
                with begin_write(self._engine) as conn:
                    # SKIP LOCKED: a row locked now is one of this holder's windows committing,
                    # whose transaction holds it to its end, maybe waiting meanwhile for another
                    # run's commit. Waiting for it would stop the heartbeat of every other
                    # window this holder is still loading, and another run would take them over.
                    claimed = conn.execute(
                        select(*keys)
                        .where(table.c.claimed_by == self.holder, table.c.state == CLAIMED)
                        .with_for_update(skip_locked=True)
                    ).all()
                    now = self._clock()
                    for state_key, start, end in claimed:
                        conn.execute(
                            table.update()
                            .where(
                                table.c.state_key == state_key,
                                table.c.window_start == start,
                                table.c.window_end == end,
                            )
                            .values(heartbeat_at=now)
                        )
            except DBAPIError as exc:  # the next beat tries again; a window's commit checks
                log.debug("heartbeat not written: %s", exc)

    # -- claims --------------------------------------------------------------------------------

    def claim(self, window: Window) -> Held | None:
        """Claim `window` (None), or say who has it (Held)."""
        table = self._table
        now = self._clock()
        where = self._where(window)
        claim = {
            "state": CLAIMED,
            "claimed_by": self.holder,
            "heartbeat_at": now,
            "run_id": self._run_id,
        }
        with begin_write(self._engine) as conn:
            # SKIP LOCKED: a row locked now is being claimed or committed by another holder.
            # Nothing here waits on another transaction's row: a holder frozen in the middle of
            # its commit must not freeze the claims of every other run.
            row = conn.execute(
                select(table).where(*where).with_for_update(skip_locked=True)
            ).first()
            if row is None:
                if conn.execute(select(table.c.state).where(*where)).first() is not None:
                    return Held("another process is claiming or committing it")
                insert = dialect_insert(conn, table).values(
                    state_key=self._key,
                    window_start=window.start,
                    window_end=window.end,
                    attempts=0,
                    **claim,
                )
                created = insert.on_conflict_do_nothing().returning(table.c.state)
                if conn.execute(created).first() is not None:
                    return None
                return Held("another process is claiming it")
            if row.state == CLAIMED and row.claimed_by != self.holder:
                stale = row.heartbeat_at is None or row.heartbeat_at < now - self._timeout
                if not stale and self._alive(row.claimed_by):
                    return Held(f"{row.claimed_by} is loading it")
                why = "no heartbeat since " + str(row.heartbeat_at) if stale else "it is gone"
                log.warning(
                    "window %s: taking over the claim of %s (%s)", window, row.claimed_by, why
                )
            elif (
                row.committed_at is not None
                and row.committed_at >= self._started_at
                and row.run_id != self._run_id
            ):
                return Held(f"run {row.run_id} loaded it while this one ran")
            conn.execute(table.update().where(*where).values(**claim))
        return None

    def loaded(self, conn: Connection, window: Window, attempts: int, where: str) -> None:
        """Record the window as loaded, in its own transaction; refuse (DatabaseError, which
        rolls the window back) when another holder has taken the claim over meanwhile."""
        table = self._table
        result = conn.execute(
            table.update()
            .where(*self._where(window), table.c.claimed_by == self.holder)
            .values(
                state=LOADED,
                claimed_by=None,
                heartbeat_at=None,
                committed_at=self._clock(),
                error=None,
                attempts=func.coalesce(table.c.attempts, 0) + attempts,
            )
        )
        if result.rowcount != 1:
            raise DatabaseError(
                f"{where}: another process took this window over (this one sent no heartbeat "
                f"for pipeline.claim_timeout = {self._timeout}): it was rolled back here and is "
                "loaded there"
            )

    def ensure_alive(self, where: str) -> None:
        """Raise DatabaseError when this holder's liveness lock is gone (its session ended):
        another run may take its claims over at any moment, so nothing more may commit.
        Window threads check in turn: the lock's connection is one, and not thread-safe."""
        with self._checking:
            self._liveness.ensure_held(where)

    def failed(self, window: Window, error: str, attempts: int) -> None:
        """Give the claim up after a failure (in a transaction of its own)."""
        table = self._table
        try:
            with begin_write(self._engine) as conn:
                conn.execute(
                    table.update()
                    .where(*self._where(window), table.c.claimed_by == self.holder)
                    .values(
                        state=FAILED,
                        claimed_by=None,
                        heartbeat_at=None,
                        error=scrub(error),
                        attempts=func.coalesce(table.c.attempts, 0) + attempts,
                    )
                )
        except DBAPIError:
            log.warning(
                "window %s: could not release its claim (the database is unreachable); "
                "another run takes it over once this process has ended",
                window,
            )

    def name_session(self, conn: Connection) -> None:
        """Name the session of one of this holder's windows after the holder, for its
        transaction, so that `others_loading` can see what it is doing (PostgreSQL)."""
        if conn.dialect.name == "postgresql":
            conn.execute(
                select(func.set_config("application_name", _session_name(self.holder), True))
            )

    def others_loading(self, window: Window) -> list[str]:
        """The holders loading another window than `window` now, of any state key, this
        holder's other windows included: claimed, with a heartbeat within
        pipeline.claim_timeout, alive, and with a window's transaction that is not itself
        waiting for a lock. Rows one of them holds are being loaded, however long that
        takes; windows that only wait, like `window`, vouch for no one (PostgreSQL)."""
        table = self._table
        claimed = (
            select(table.c.claimed_by)
            .where(
                table.c.state == CLAIMED,
                table.c.heartbeat_at >= self._clock() - self._timeout,
                ~and_(*self._where(window)),
            )
            .distinct()
        )
        with self._engine.connect() as conn:
            names = {_session_name(h): h for h in conn.execute(claimed).scalars()}
            if not names:
                return []
            # Sessions of other roles show no transaction here (pg_stat_activity hides it
            # without pg_read_all_stats): they vouch for no one either.
            activity = text(
                "SELECT DISTINCT application_name FROM pg_stat_activity "
                "WHERE application_name = ANY(:names) AND xact_start IS NOT NULL "
                "AND wait_event_type IS DISTINCT FROM 'Lock'"
            )
            busy = conn.execute(activity, {"names": list(names)}).scalars().all()
        holders = sorted(names[name] for name in busy)
        return [h for h in holders if h == self.holder or self._alive(h)]

    def _where(self, window: Window) -> tuple[Any, ...]:
        table = self._table
        return (
            table.c.state_key == self._key,
            table.c.window_start == window.start,
            table.c.window_end == window.end,
        )

    def _alive(self, holder: str) -> bool:
        """Whether `holder`'s liveness lock is held (it is alive, maybe frozen).

        A probe holds the lock for a moment: this process's windows probe one at a time, and
        remember the holders found gone, so that one probe never reads another as a holder.
        (Another process probing at the same moment may read ours so: it then leaves the
        window to us, which takes it over.)
        """
        with self._probing:
            if holder in self._gone:
                return False
            probe = RunLock(self._engine, _liveness_key(holder))
            try:
                probe.acquire()
            except LockedError:
                return True
            probe.release(remove=True)  # its holder is gone for good
            self._gone.add(holder)
            return False
