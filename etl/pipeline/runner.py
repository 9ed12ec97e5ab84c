"""Runs windows: extract → normalize → load in one transaction that also moves the watermark."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import psycopg
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from tenacity import RetryCallState

from etl.config import HARD, IGNORE, Settings
from etl.errors import ConfigError, DatabaseError, DataError, EtlError, Interrupted
from etl.extract import BrokenStreamError, ExportClient, ExportStream, window_retrying
from etl.extract.errors import ExactParseNeeded
from etl.extract.files import open_export_file
from etl.load.claims import Held, WindowLedger
from etl.load.engine import SQLITE_BUSY_SECONDS, begin_write, make_engine
from etl.load.loader import (
    CHANGED,
    NEW,
    OUTCOMES,
    REJECTED,
    Origin,
    WindowLoader,
    loader_class,
    open_loader,
)
from etl.load.localtime import refuse_other_zone, relocalize, stored_zone
from etl.load.lock import RunLock
from etl.load.revision import current_revision, refuse_other_revision
from etl.load.schema import build_metadata, table_of
from etl.load.state import StateStore, WindowReport, state_key
from etl.normalize import Digest, NormalizedConversation, NormalizeError, normalize_conversation
from etl.normalize.digest import TOO_DEEP
from etl.normalize.rejects import Rejected, rejected
from etl.normalize.wire import decoded
from etl.pipeline.loading import LoadingThread
from etl.pipeline.progress import LogProgress, Progress
from etl.pipeline.worker import Extracted, ExtractWorker, as_sent
from etl.testhooks import pause_point
from etl.windows import Window, plan_windows

log = logging.getLogger("etl.pipeline")


@dataclass
class RunResult:
    """What a command did, window by window."""

    windows: list[WindowReport] = field(default_factory=list)
    # Windows another run was loading (or loaded while this one ran): not loaded here.
    skipped: list[Window] = field(default_factory=list)

    @property
    def conversations(self) -> int:
        return sum(r.conversations for r in self.windows)


_COPY_CONTEXT = re.compile(r"COPY [^,\s]+, line \d+(?:, column [^:\s]+)?")


# What SQLite says when the file, not a connection, is the trouble.
_SQLITE_REFUSALS: Final = ("readonly database", "disk is full", "disk I/O error")


def database_error(
    exc: DBAPIError | psycopg.Error,
    where: str,
    *,
    undone: str = "the window was rolled back",
    reading: bool = False,
) -> DatabaseError:
    """A DatabaseError naming the cause without the statement's parameters (they may be data).

    `exc` comes from SQLAlchemy, or straight from psycopg for the COPY loader's own statements;
    `undone`: what the failure left undone; `reading`: the command only reads.
    """
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    detail = (
        str(orig).strip().splitlines()[0]
        if orig is not None and str(orig).strip()
        else type(exc).__name__
    )
    where_in_copy = _COPY_CONTEXT.match(getattr(getattr(orig, "diag", None), "context", "") or "")
    if where_in_copy:  # the table and column, never the value (it is data)
        detail += f"; {where_in_copy.group(0)}"
    if isinstance(exc, DBAPIError):
        lost = isinstance(exc, OperationalError | SAInterfaceError) or exc.connection_invalidated
    else:
        lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    # psycopg's connect raises "connection failed: ..." (refused, unknown host, bad password):
    # there was no connection to lose.
    unreachable = isinstance(orig, psycopg.OperationalError) and str(orig).startswith(
        "connection failed"
    )
    # A protocol violation is the server refusing what was sent (a COPY row that does not fit
    # a column's type), on a connection that is fine: retrying would send the same again. So
    # is a program limit (SQLSTATE class 54: a value too long for an index entry, too many
    # columns), which psycopg raises as OperationalError too.
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if isinstance(orig, psycopg.errors.ProtocolViolation) or sqlstate.startswith("54"):
        lost = False
    # Windows load in parallel: the server may end one of two transactions waiting on each
    # other's rows. Loading the window again is the remedy.
    conflict = isinstance(
        orig, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
    )
    # Rows another window held for longer than pipeline.claim_timeout (a frozen holder).
    waited = isinstance(orig, psycopg.errors.LockNotAvailable)
    # (psycopg raises both as OperationalError, which reads as a lost connection otherwise.)
    # A role without a grant it needs, for a read as for a write.
    denied = isinstance(orig, psycopg.errors.InsufficientPrivilege)
    # SQLite: another process's write transaction outlasted the busy timeout.
    busy = isinstance(orig, sqlite3.OperationalError) and "database is locked" in str(orig)
    # SQLite raises a file it cannot write as OperationalError too: not a connection, and
    # writing again at once fails the same way.
    if isinstance(orig, sqlite3.OperationalError) and any(
        cause in str(orig) for cause in _SQLITE_REFUSALS
    ):
        lost = False
    happened = (
        "ended the transaction to break a deadlock with another window"
        if conflict
        else "gave up waiting (pipeline.claim_timeout) for rows another window holds; if "
        "that run is stuck, stop it"
        if waited
        else f"was busy: another process (a load?) held the SQLite file's write lock for "
        f"more than {SQLITE_BUSY_SECONDS} s"
        if busy
        else "refused this role (README, 'Least privilege': grant it what is listed there)"
        if denied
        else "is unreachable"
        if unreachable
        else "connection was lost"
        if lost
        else "refused the read"
        if reading
        else "refused the write"
    )
    error = DatabaseError(f"{where}: the warehouse {happened} ({detail}); {undone}")
    error.retryable = lost or conflict or waited
    error.waited = waited
    return error


class Pipeline:
    """The incremental loader over one warehouse and one API site."""

    def __init__(
        self,
        settings: Settings,
        *,
        command: str,
        progress: Progress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.command = command
        self.progress: Progress = progress or LogProgress()
        self.clock = clock
        self.run_id = uuid.uuid4().hex
        self.engine = engine or make_engine(settings.warehouse.url, must_exist=True)
        self.metadata = build_metadata(settings.warehouse.schema)
        self.store = StateStore(self.metadata)
        self.filters = dict(settings.api.filters)
        self.key = state_key(settings.api.url or "file", self.filters)
        self._client: ExportClient | None = None
        self._client_lock = threading.Lock()
        self._run_lock: RunLock | None = None
        # Set by the main thread to stop the window threads (Ctrl-C, SIGTERM).
        self._stopping = threading.Event()
        # The share of the last window's conversations that were loaded: where the next
        # window's worker starts (see etl.pipeline.worker).
        self._loaded_share = 1.0
        # A warehouse with one writer (SQLite) has its windows in parallel download their
        # exports to disk while one at a time writes.
        self._one_writer = not loader_class(self.engine.dialect.name).concurrent_windows
        self._spool = self._one_writer and settings.pipeline.workers > 1
        self._write_turn: AbstractContextManager[Any] = (
            threading.Lock() if self._spool else nullcontext()
        )

    # -- set-up -------------------------------------------------------------------------------

    def check_schema(self, *, loads: bool = True) -> None:
        """Refuse a warehouse that is not migrated to this version's head; and, where the
        command `loads`, one whose local dates are for another reporting zone (recording the
        configured one where none is yet)."""
        try:
            current = current_revision(self.engine, self.settings.warehouse.schema)
        except DBAPIError as exc:
            raise database_error(
                exc,
                f"connecting to {self.settings.warehouse.display_url}",
                undone="nothing was done: check the database and run again",
            ) from None
        refuse_other_revision(current, self.settings.warehouse.display_url)
        if loads:
            self._check_reporting_zone()

    def _check_reporting_zone(self) -> None:
        """Refuse to store local dates of another zone than those already stored; record the
        configured zone in a warehouse that has none yet."""
        wanted = self.settings.reporting.timezone
        try:
            with begin_write(self.engine) as conn:
                stored = stored_zone(conn, self.metadata)
                if stored is None:
                    relocalize(conn, self.metadata, wanted)
        except DBAPIError as exc:
            raise database_error(
                exc, f"reading the reporting zone of {self.settings.warehouse.display_url}"
            ) from None
        refuse_other_zone(stored, wanted, self.settings.warehouse.display_url)

    def lock(self) -> RunLock:
        """One run at a time per warehouse and state key (load-file, reprocess-rejects)."""
        self._run_lock = RunLock(self.engine, f"{self.key}:{self.settings.warehouse.schema or ''}")
        return self._run_lock

    def lock_for_windows(self) -> AbstractContextManager[Any]:
        """What `run` and `backfill` hold: nothing where runs share a range through window
        claims (PostgreSQL); the run lock where the warehouse has one writer (SQLite), whose
        write lock a loading window holds throughout, so that another process could not even
        claim a window meanwhile: its threads take turns instead (`_write_turn`)."""
        return self.lock() if self._one_writer else nullcontext()

    @property
    def client(self) -> ExportClient:
        """One client for all the windows of the run: they share its request gate."""
        with self._client_lock:
            if self._client is None:
                self._client = ExportClient(
                    self.settings.require_api(), max_pause=self.settings.retry.max_wait
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.engine.dispose()

    # -- planning -----------------------------------------------------------------------------

    def watermark(self) -> datetime | None:
        with self.engine.connect() as conn:
            return self.store.watermark(conn, self.key)

    def plan_run(self, until: datetime | None = None) -> list[Window]:
        """Windows from the watermark (or `pipeline.start`) up to now − lag (or `until`), on
        the grid of `pipeline.start` and `pipeline.window` (the last one cut at the end)."""
        p = self.settings.pipeline
        start = self.watermark() or p.start
        if start is None:
            raise ConfigError(
                f"there is no watermark yet and pipeline.start is not set ({self.settings.source}): "
                "set pipeline.start to where the first run should begin, or run a backfill"
            )
        horizon = self.clock() - p.lag
        end = min(until, horizon) if until is not None else horizon
        return list(plan_windows(start, end, p.window, grid=p.start))

    # -- commands -----------------------------------------------------------------------------

    def run(self, windows: Sequence[Window]) -> RunResult:
        """Load consecutive windows from the watermark (or pipeline.start) on."""
        return self._load_windows(windows, floor=windows[0].start)

    def backfill(self, windows: Sequence[Window]) -> RunResult:
        """(Re)load windows; the watermark moves only when they extend its contiguous run."""
        # Without a watermark, loading starts at pipeline.start (or this backfill's start).
        return self._load_windows(windows, floor=self.settings.pipeline.start or windows[0].start)

    def load_files(self, paths: Iterable[Path], *, replace: bool = False) -> RunResult:
        """Load saved export files through the same normalizer and loader; no watermark.

        `replace`: a file's conversations replace stored copies whatever their export times
        (see etl.load.loader.outcome).
        """
        result = RunResult()
        paths = list(paths)
        self.progress.begin(len(paths), self.command)
        try:
            for path in paths:
                result.windows.append(self._load_file(path, replace))
        finally:
            self.progress.end()
        return result

    def _load_file(self, path: Path, replace: bool) -> WindowReport:
        try:
            return self._load_file_with(path, replace, pure_python=False)
        except ExactParseNeeded as exc:
            log.warning("%s", exc)
            return self._load_file_with(path, replace, pure_python=True)

    def _load_file_with(self, path: Path, replace: bool, *, pure_python: bool) -> WindowReport:
        started = time.monotonic()
        stream: ExportStream | None = None
        try:
            # Opening reads the file's head (its compression, query_info): a file that is not
            # an export fails there, and is as much a data error as one cut short further in.
            stream = open_export_file(path, pure_python=pure_python)
            window = _file_window(stream, path)
            report = WindowReport(
                self.run_id, self.key, self.command, window, self.clock(), attempts=1,
                file=str(path),
            )  # fmt: skip
            self.progress.window_started(report.label, 1)
            # A saved file's export time is what its query_info says, or unknown.
            exported_at = _export_time(stream.query_info)
            report.export_time_known = exported_at is not None
            self._load_stream(
                stream, report, started=started, exported_at=exported_at, replace=replace
            )
        except ExactParseNeeded:
            raise
        except BrokenStreamError as exc:
            raise _not_a_whole_export(exc) from None
        finally:
            if stream is not None:
                stream.close()
        self.progress.window_done(report)
        return report

    def reprocess_rejects(self) -> dict[str, int]:
        """Load every quarantined conversation again (after an upgrade or a fix): each that
        loads leaves etl_rejects in the same transaction; each that still cannot stays, with
        its new error and one more attempt. Returns the count of each outcome."""
        rejects = table_of(self.metadata, "etl_rejects")
        with self.engine.connect() as conn:  # ids first: the bodies are read one at a time
            pending = list(conn.execute(select(rejects.c.id).order_by(rejects.c.id)).scalars())
        counts = dict.fromkeys(OUTCOMES, 0)
        for reject_id in pending:
            where = f"reprocessing etl_rejects row {reject_id}"
            try:
                with begin_write(self.engine) as conn:
                    reject = conn.execute(
                        select(rejects).where(rejects.c.id == reject_id)
                    ).one_or_none()
                    if reject is None:
                        continue  # removed meanwhile
                    loader = open_loader(
                        conn, self.metadata, run_id=self.run_id, exported_at=reject.exported_at
                    )
                    loader.origin = Origin(
                        reject.state_key, reject.source, reject.window_start, reject.window_end
                    )
                    loader.merge(*self._renormalized(reject.body, reject.position))
                    loader.finish()
                    if not loader.outcomes[REJECTED]:
                        conn.execute(rejects.delete().where(rejects.c.id == reject_id))
            except (DBAPIError, psycopg.Error) as exc:
                raise database_error(exc, where) from None
            except NormalizeError as exc:  # found while writing (nested too deeply to store)
                with begin_write(self.engine) as conn:
                    conn.execute(
                        rejects.update()
                        .where(rejects.c.id == reject_id)
                        .values(
                            error=exc.what,
                            attempts=rejects.c.attempts + 1,
                            last_tried_at=datetime.now(UTC),
                            run_id=self.run_id,
                        )
                    )
                counts[REJECTED] += 1
                log.info("%s: still cannot be loaded, kept: %s", where, exc.what)
                continue
            for name, count in loader.outcomes.items():
                counts[name] += count
            log.info(
                "%s (conversation %s): %s", where, reject.conversation_id, _fate(loader.outcomes)
            )
        return counts

    def _renormalized(
        self, body: str, position: int | None
    ) -> tuple[list[NormalizedConversation], list[Rejected]]:
        """A quarantined conversation's text, normalized again (or rejected again)."""
        rejects: list[Rejected] = []
        try:
            conversation = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return [], [rejected(position, None, body, f"its text is not JSON: {exc}")]
        try:
            item = as_sent(conversation, None, position=position or 0)
        except NormalizeError as exc:
            return [], [rejected(position, conversation, body, exc.what)]
        keep_raw = self.settings.warehouse.keep_raw
        batch = normalize_batch([item], keep_raw=keep_raw, rejects=rejects)
        # The text as quarantined, so that rejecting it again updates the same row.
        for normalized in batch:
            normalized.body = body
        return batch, [dataclasses.replace(r, body=body) for r in rejects]

    # -- the window loop ----------------------------------------------------------------------

    def _load_windows(self, windows: Sequence[Window], *, floor: datetime) -> RunResult:
        """Claim and load each window, `pipeline.workers` at once; then the watermark is the
        end of the contiguous run of loaded windows from it (or from `floor`)."""
        result = RunResult()
        ledger = WindowLedger(
            self.engine,
            self.metadata,
            key=self.key,
            run_id=self.run_id,
            timeout=self.settings.pipeline.claim_timeout,
        )
        try:
            ledger.start()
        except DBAPIError as exc:
            raise database_error(exc, "taking this run's lock") from None
        self.progress.begin(len(windows), self.command)
        try:
            if self.settings.pipeline.workers == 1:
                for window in windows:
                    self._record(result, window, self._claim_and_load(ledger, window, floor))
            else:
                self._load_in_parallel(windows, floor, ledger, result)
        finally:
            ledger.stop()
            self.progress.end()
        return result

    def _record(self, result: RunResult, window: Window, outcome: WindowReport | Held) -> None:
        """A window's outcome, reported as it comes and kept in `result`."""
        if isinstance(outcome, Held):
            result.skipped.append(window)
            log.info("window %s: left to another run (%s)", window, outcome.reason)
            return
        result.windows.append(outcome)
        self.progress.window_done(outcome)

    def _load_in_parallel(
        self, windows: Sequence[Window], floor: datetime, ledger: WindowLedger, result: RunResult
    ) -> None:
        """Windows in threads, each with its own connection, transaction and retries. After a
        window fails, the windows in flight finish and no new one starts (as in a serial run);
        the first failure is raised once they have. Ctrl-C or SIGTERM (in this, the main
        thread) rolls back the windows in flight at their next batch."""
        failure: BaseException | None = None
        with ThreadPoolExecutor(self.settings.pipeline.workers, "etl-window") as pool:
            futures = {
                pool.submit(self._claim_and_load, ledger, window, floor): i
                for i, window in enumerate(windows)
            }
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except CancelledError:
                        continue
                    except BaseException as exc:  # noqa: BLE001 - raised below, once
                        if failure is None:
                            failure = exc
                            for pending in futures:
                                pending.cancel()
                        continue
                    self._record(result, windows[futures[future]], outcome)
            except KeyboardInterrupt as exc:
                self._stopping.set()
                for pending in futures:
                    pending.cancel()
                wait(futures)
                committed = sum(
                    1
                    for f in futures
                    if not f.cancelled()
                    and f.exception() is None
                    and isinstance(f.result(), WindowReport)
                )
                raise Interrupted(
                    f"interrupted ({exc or 'SIGINT'}): {committed} window(s) committed, the "
                    "windows in flight were rolled back and the watermark stays at the first "
                    "window not loaded: run again to resume"
                ) from None
        order = {window: i for i, window in enumerate(windows)}  # they finish in any order

        def position(report: WindowReport) -> int:
            assert report.window is not None  # an API window always has its range
            return order[report.window]

        result.windows.sort(key=position)
        result.skipped.sort(key=order.__getitem__)
        if failure is not None:
            raise failure

    def _claim_and_load(
        self, ledger: WindowLedger, window: Window, floor: datetime
    ) -> WindowReport | Held:
        try:
            with self._write_turn:
                held = ledger.claim(window)
        except DBAPIError as exc:
            raise database_error(exc, f"claiming window {window} in etl_windows") from None
        if held is not None:
            return held
        return self._load_window(window, floor, ledger)

    def _load_window(self, window: Window, floor: datetime, ledger: WindowLedger) -> WindowReport:
        report = WindowReport(self.run_id, self.key, self.command, window, self.clock())
        started = time.monotonic()

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            assert error is not None
            self.progress.window_retrying(window, state.attempt_number, error, state.upcoming_sleep)

        try:
            for attempt in window_retrying(self.settings.retry, before_sleep=before_sleep):
                with attempt:
                    report.attempts += 1
                    self.progress.window_started(window, report.attempts)
                    while True:
                        try:
                            self._load_window_once(window, report, ledger, floor, started)
                            break
                        except DatabaseError as exc:
                            if not exc.waited:
                                raise
                            try:
                                loading = ledger.others_loading(window)
                            except (DBAPIError, EtlError):
                                raise exc from None  # the wait's own error: retried as such
                            if not loading:
                                raise
                            # Rows held that long by a run that is alive and loading: a
                            # long window, not a stuck one. Waiting again uses no attempt.
                            log.warning(
                                "%s: rows another run holds were not released within "
                                "pipeline.claim_timeout; %s, alive, loading: waiting again",
                                report.label,
                                ", ".join(loading),
                            )
        except EtlError as exc:
            if exc.retryable:
                # Say plainly that retrying is over, and what state the warehouse is in.
                exc.args = (
                    f"{exc} — gave up after {report.attempts} attempt(s); nothing of this window "
                    "was committed and the watermark stays at the last good window: run again later",
                )
            with self._write_turn:
                self._log_failure(report, exc, started)
                ledger.failed(window, str(exc), report.attempts)
            raise
        except KeyboardInterrupt as exc:
            raise self._interrupted(report, exc, started, ledger) from None
        except BaseException as exc:  # a bug: still give the claim up, so no one waits for it
            with self._write_turn:
                self._log_failure(report, exc, started)
                ledger.failed(window, f"{type(exc).__name__}: {exc}", report.attempts)
            raise
        return report

    def _load_window_once(
        self,
        window: Window,
        report: WindowReport,
        ledger: WindowLedger,
        floor: datetime,
        started: float,
    ) -> None:
        """Download the window's export and load it, in one transaction."""
        try:
            with self.client.open(window, spool=self._spool) as stream, self._write_turn:
                # The server's time of the export, or (it did not say) ours.
                exported_at = _export_time(stream.query_info) or self.clock()
                self._load_stream(
                    stream,
                    report,
                    ledger=ledger,
                    floor=floor,
                    started=started,
                    exported_at=exported_at,
                )
        except ExactParseNeeded:
            self.client.parse_exactly(window)  # on the next attempt
            raise

    def _interrupted(
        self, report: WindowReport, exc: KeyboardInterrupt, started: float, ledger: WindowLedger
    ) -> Interrupted:
        """SIGINT/SIGTERM during a window: say whether the window had committed (the database
        knows: its `etl_runs` row commits with it), and log it as interrupted if it had not."""
        cause = str(exc) or "SIGINT"
        where = report.label
        assert report.window is not None  # an API window: files have no interruption report
        try:
            with self.engine.connect() as conn:
                committed = self.store.committed(conn, self.run_id, report.window)
        except DBAPIError:
            return Interrupted(
                f"{where}: interrupted ({cause}); the window was rolled back unless its commit "
                "had already completed (`etl status` shows the watermark): run again to resume"
            )
        if committed:
            return Interrupted(
                f"{where}: interrupted ({cause}) once the window had committed: it is loaded and "
                "the watermark is past it; run again to continue with the next window"
            )
        report.outcome = "interrupted"
        with self._write_turn:
            self._log_failure(report, None, started)
            ledger.failed(report.window, "interrupted", report.attempts)
        return Interrupted(
            f"{where}: interrupted ({cause}); the window was rolled back and the watermark stays "
            "at the last good window: run again to resume"
        )

    def _load_stream(
        self,
        stream: ExportStream,
        report: WindowReport,
        *,
        ledger: WindowLedger | None = None,
        floor: datetime | None = None,
        started: float,
        exported_at: datetime | None,
        replace: bool = False,
    ) -> None:
        """Load one window's stream in one transaction, which also records the window in the
        `ledger` (its claim still held) and moves the watermark over it when it extends the
        contiguous run from the watermark (or `floor`). Files have no ledger: no watermark.
        `exported_at` and `replace`: see loader.outcome."""
        report.expected_conversations = stream.expected
        report.query_info = stream.query_info
        where = report.label
        try:
            with begin_write(self.engine) as conn:
                loader = open_loader(
                    conn,
                    self.metadata,
                    run_id=self.run_id,
                    exported_at=exported_at,
                    replace=replace,
                    lock_wait=self.settings.pipeline.claim_timeout,
                )
                if ledger is not None:  # an API window: the source, under this state key
                    loader.source_key = self.key
                    ledger.name_session(conn)
                loader.origin = Origin(
                    state_key=self.key,
                    # A file name that is not UTF-8 holds lone surrogates (PEP 383): as escapes.
                    source=where.encode("utf-8", "surrogateescape").decode(
                        "utf-8", "backslashreplace"
                    ),
                    window_start=report.window.start if report.window else None,
                    window_end=report.window.end if report.window else None,
                )
                received = 0
                keep_raw = self.settings.warehouse.keep_raw
                quarantine = self.settings.pipeline.quarantine

                def rows_of(
                    items: list[Extracted], rejects: list[Rejected]
                ) -> list[NormalizedConversation]:
                    kept = rejects if quarantine else None
                    return normalize_batch(
                        items, keep_raw=keep_raw, rejects=kept, unchanged=loader.unchanged
                    )

                with (
                    ExtractWorker(
                        stream,
                        self.settings.warehouse.batch_size,
                        quarantine=quarantine,
                        keep_raw=keep_raw,
                        loaded_share=self._loaded_share,
                        stop=self._stopping,
                    ) as worker,
                    LoadingThread(loader, rows_of) as loading,
                ):
                    for items, rejects in worker:
                        if self._stopping.is_set():  # Ctrl-C in the main thread (parallel)
                            raise KeyboardInterrupt("stopped")
                        count = len(items) + len(rejects)  # before normalizing adds to rejects
                        loading.put(items, rejects)
                        worker.report_loaded_share(loaded_share(loader.outcomes))
                        received += count
                        self.progress.conversations(count)
                        pause_point("mid-stream", received)  # tests only: ETL_TEST_PAUSE_AT
                    end = worker.end
                    loading.drain()
                self._loaded_share = loaded_share(loader.outcomes)
                assert end is not None  # the worker ended the stream without an error
                loader.finish()
                if ledger is not None and report.window is not None:
                    loader.confirm_returned()
                    report.deleted = self._detect_deletes(loader, report.window, stream, where)
                report.conversations = end.received
                report.rows = dict(loader.rows)
                report.conversation_outcomes = dict(loader.outcomes)
                report.post_query_info = end.post_query_info
                report.unknown_elements = end.unknown_elements
                if end.finer_than_microseconds:
                    log.warning(
                        "%s: %d times have digits finer than a microsecond; they are read to the "
                        "microsecond (docs/schema.md, the normalizations)",
                        where,
                        end.finer_than_microseconds,
                    )
                report.bytes = end.bytes_received
                report.seconds = time.monotonic() - started
                report.outcome = "ok"
                report.error = None
                if ledger is not None and report.window is not None and floor is not None:
                    ledger.loaded(conn, report.window, report.attempts, where)
                    self.store.advance_over_loaded(
                        conn,
                        self.key,
                        floor=floor,
                        site=self.settings.api.url or "file",
                        filters=self.filters,
                        run_id=self.run_id,
                    )
                self.store.log_window(conn, report)
                pause_point("before-commit")
                # Never commit a window without the lock, or the claim's liveness lock.
                if self._run_lock is not None:
                    self._run_lock.ensure_held(where)
                if ledger is not None:
                    ledger.ensure_alive(where)
        except (DBAPIError, psycopg.Error) as exc:
            raise database_error(exc, where) from None
        except NormalizeError as exc:
            raise DataError(f"{where}: {exc}") from None  # name the window or file too
        pause_point("after-commit")

    def _detect_deletes(
        self, loader: WindowLoader, window: Window, stream: ExportStream, where: str
    ) -> int | None:
        """pipeline.deletes, once a window's export has ended properly: the stored
        conversations it should have returned and did not (None: not looked for)."""
        policy = self.settings.pipeline.deletes
        if policy == IGNORE:
            return None
        if stream.expected is None:
            # Without the count the export announced, an export cut short is not told from a
            # complete one: a deletion must never rest on that.
            log.warning(
                "%s: the export announced no conversation count; deletions not looked for", where
            )
            return None
        if loader.unidentified:
            # A quarantined conversation without a readable id was returned, but which one?
            log.warning(
                "%s: %d quarantined conversation(s) have no readable id; deletions not looked for",
                where,
                loader.unidentified,
            )
            return None
        deleted = loader.detect_deletes(window.start, window.end, hard=policy == HARD)
        if deleted:
            log.info(
                "%s: %d stored conversation(s) no longer exported: %s",
                where,
                deleted,
                "removed" if policy == HARD else "marked deleted (conversations.deleted_at)",
            )
        return deleted

    def _log_failure(self, report: WindowReport, exc: BaseException | None, started: float) -> None:
        report.outcome = "failed" if exc is not None else "interrupted"
        report.error = str(exc) if exc is not None else "interrupted"
        report.seconds = time.monotonic() - started
        # Nothing of the window is committed: what an attempt counted before failing is not.
        report.conversations = 0
        report.rows = {}
        report.conversation_outcomes = {}
        report.post_query_info = None
        report.unknown_elements = []
        report.deleted = None
        try:
            with begin_write(self.engine) as conn:
                self.store.log_window(conn, report)
        except DBAPIError:
            log.warning(
                "could not record the failed window in etl_runs (the database is unreachable)"
            )


def _fate(outcomes: dict[str, int]) -> str:
    """What reprocessing did with one quarantined conversation, for its log line."""
    if outcomes[REJECTED]:
        return "still cannot be loaded, kept"
    if outcomes[NEW] or outcomes[CHANGED]:
        return "loaded, removed from the quarantine"
    return (
        "removed from the quarantine without loading: the warehouse holds the same copy or one "
        "from a later export"
    )


def normalize_batch(
    batch: list[Extracted],
    *,
    keep_raw: bool,
    rejects: list[Rejected] | None = None,
    unchanged: Callable[[Sequence[tuple[int, str]]], set[int]] | None = None,
) -> list[NormalizedConversation]:
    """A batch's conversations as rows, in stream order.

    A batch holds one copy of each conversation (the extract worker starts a new batch when
    one comes again). The rows of those the extract worker normalized are decoded, the others
    normalized here. Consumes `batch`: it is emptied, and each conversation's text is let go
    once its rows are made, so a batch is not held twice over (as text and as rows) while it
    turns into rows. `rejects`: the batch's quarantined conversations, where one that cannot
    be normalized here goes too, each row set then keeping its position and text for the
    loader; None: it raises NormalizeError. `unchanged` (WindowLoader.unchanged) is asked
    which of those still to normalize are stored as they are: they are left out,
    unnormalized (a re-run's whole batch, as a rule).
    """
    pending = batch[:]
    batch.clear()
    if len({item[0].id for item in pending}) < len(pending):
        raise ValueError("a batch holds one copy of each conversation: start a new batch")
    if unchanged is not None:
        asked = [(item[0].id, item[0].content_hash) for item in pending if item[3] is None]
        same = unchanged(asked) if asked else set()
        if same:
            pending = [item for item in pending if item[3] is not None or item[0].id not in same]
    pending.reverse()  # popped from the end: in stream order
    normalized = []
    while pending:
        rows = _rows_of(pending.pop(), keep_raw, rejects)
        if rows is not None:
            normalized.append(rows)
    return normalized


def _rows_of(
    item: Extracted, keep_raw: bool, rejects: list[Rejected] | None
) -> NormalizedConversation | None:
    """The rows of one conversation as it crossed from the worker; None when it is
    quarantined (added to `rejects`)."""
    digest, text, position, encoded_rows = item
    if encoded_rows is not None:
        rows = NormalizedConversation(digest.id, digest.content_hash, decoded(encoded_rows), True)
        if rejects is not None:
            rows.position, rows.body = position, text
        return rows
    assert text is not None  # the worker sends the text of what it did not normalize
    if rejects is None:
        return normalize_conversation(_parsed(text, digest), keep_raw=keep_raw, digest=digest)
    try:
        rows = normalize_conversation(_parsed(text, digest), keep_raw=keep_raw, digest=digest)
    except NormalizeError as exc:
        rejects.append(rejected(position, {"id": digest.id}, text, exc.what))
        return None
    rows.position, rows.body = position, text
    return rows


def loaded_share(outcomes: Mapping[str, int]) -> float:
    """The share of a window's conversations so far that were loaded (new or changed); 1.0
    before the first is merged."""
    seen = sum(outcomes.values())
    return (outcomes[NEW] + outcomes[CHANGED]) / seen if seen else 1.0


def _parsed(text: bytes | str, digest: Digest) -> dict[str, Any]:
    """A conversation from the text the extract worker sent (see worker.Extracted)."""
    try:
        parsed: dict[str, Any] = orjson.loads(text) if isinstance(text, bytes) else json.loads(text)
    except RecursionError:
        raise NormalizeError(TOO_DEEP, conversation_id=digest.id) from None
    return parsed


def _export_time(query_info: dict[str, Any]) -> datetime | None:
    value = query_info.get("current_time")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _not_a_whole_export(exc: BrokenStreamError) -> DataError:
    """A saved file that is not a whole export: reading it again gives the same, so it is a
    data error (exit 5), not an upstream one to retry (exit 4)."""
    reason = str(exc).removesuffix("; the window is incomplete")
    return DataError(
        f"{reason}; the file is not a whole Export API v3 body, nothing of it was loaded: "
        "check that it is the export's response saved in full"
    )


def _file_window(stream: ExportStream, path: Path) -> Window | None:
    """The range a saved export says it covers (query_info.interpreted_query_range), or None
    (logged) when it is missing or not a pair of instants with UTC offsets."""
    bounds = stream.query_info.get("interpreted_query_range")
    try:
        start, end = (datetime.fromisoformat(b) for b in bounds)  # type: ignore[union-attr]
        return Window(start, end)
    except (TypeError, ValueError):
        log.warning(
            "%s: query_info.interpreted_query_range is missing or not two date-times with a UTC "
            "offset (%r): etl_runs records the file's range as unknown",
            path,
            bounds,
        )
        return None
