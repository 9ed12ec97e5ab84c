"""`etl forget` and `etl prune`: transactions, batches and their rows in the run log."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import psycopg
from sqlalchemy.exc import DBAPIError

from etl.load import erased, erasure
from etl.load.engine import begin_write
from etl.load.loader import FORGOTTEN, open_loader
from etl.load.state import WindowReport
from etl.pipeline.runner import Pipeline, database_error

log = logging.getLogger(__name__)

# Conversations pruned per transaction: each batch's locks are held only while it is deleted,
# so that dashboards and loads wait for one batch at most, never for the whole prune.
PRUNE_BATCH: Final = 1000


@dataclass
class Erased:
    """What a forget or a prune did (or, dry, would do)."""

    conversations: list[int] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # per table, etl_rejects included
    dry_run: bool = False
    # References and identifiers recorded (hashed) to keep out of every later load.
    recorded: int = 0


def forget(
    pipeline: Pipeline,
    *,
    ids: Collection[int] = (),
    references: Collection[str] = (),
    identifiers: Collection[str] = (),
    dry_run: bool = False,
) -> Erased:
    """Erase the conversations the request names, in one transaction, with tombstones, and
    record its references and identifiers (erased.record); logged in etl_runs (command
    "forget") with the number erased and the rows deleted.

    The windows loading when it starts are waited for first (WindowLoader.wait_for_windows),
    and new ones wait for its commit: what they stored is then found and erased here, and
    what they load after it is checked against what this recorded."""
    where = "etl forget"
    started, clock = time.monotonic(), datetime.now(UTC)
    metadata = pipeline.metadata
    try:
        if dry_run:
            with pipeline.engine.connect() as conn:
                found = erasure.matching(
                    conn, metadata, ids=ids, references=references, identifiers=identifiers
                )
                rows = erasure.count_rows(conn, metadata, found.conversations, found.rejects)
                asked = len(references) + len(identifiers)
                return Erased(found.conversations, rows, dry_run=True, recorded=asked)
        with begin_write(pipeline.engine) as conn:
            # A window frozen mid-load would hold forget up for ever, and with it every window
            # that starts meanwhile (they wait for forget): it waits as long as a window waits
            # for another, then fails without erasing anything.
            loader = open_loader(
                conn,
                metadata,
                run_id=pipeline.run_id,
                exported_at=None,
                erasing=True,
                lock_wait=pipeline.settings.pipeline.claim_timeout,
            )
            loader.wait_for_windows()
            recorded = erased.record(
                conn,
                metadata,
                references=references,
                identifiers=identifiers,
                run_id=pipeline.run_id,
            )
            found = erasure.matching(
                conn, metadata, ids=ids, references=references, identifiers=identifiers
            )
            rows = erasure.forget(conn, metadata, loader, found, run_id=pipeline.run_id)
            report = WindowReport(pipeline.run_id, pipeline.key, "forget", None, clock)
            report.rows = rows
            report.conversation_outcomes = {FORGOTTEN: len(found.conversations)}
            report.seconds = time.monotonic() - started
            pipeline.store.log_window(conn, report)
    except (DBAPIError, psycopg.Error) as exc:
        raise database_error(exc, where, undone="nothing was erased: run it again") from None
    return Erased(found.conversations, rows, recorded=recorded)


def prune(pipeline: Pipeline, cutoff: datetime, *, dry_run: bool = False) -> Erased:
    """Remove the conversations whose last message is before `cutoff`, PRUNE_BATCH per
    transaction; logged in etl_runs (command "prune"), also when a batch fails after others
    committed (outcome "failed", with what was pruned until then)."""
    started, clock = time.monotonic(), datetime.now(UTC)
    metadata = pipeline.metadata
    done = Erased(dry_run=dry_run)
    report = WindowReport(pipeline.run_id, pipeline.key, "prune", None, clock)
    where = f"etl prune (last message before {cutoff.isoformat()})"
    try:
        if dry_run:
            with pipeline.engine.connect() as conn:
                ids = erasure.expired(conn, metadata, cutoff, limit=2**62)
                rejects = erasure.expired_rejects(conn, metadata, cutoff)
                done.conversations = ids
                done.rows = erasure.count_rows(conn, metadata, ids, rejects)
            return done
        with begin_write(pipeline.engine) as conn:
            rejects = erasure.expired_rejects(conn, metadata, cutoff)
            erasure.delete_rejects(conn, metadata, rejects)
        done.rows["etl_rejects"] = len(rejects)
        while True:
            with begin_write(pipeline.engine) as conn:
                ids = erasure.expired(conn, metadata, cutoff, limit=PRUNE_BATCH)
                if not ids:
                    break
                loader = open_loader(
                    conn, metadata, run_id=pipeline.run_id, exported_at=None, erasing=True
                )
                # Chosen before the locks: a window loading one of them may have made it
                # recent while this waited for it, so the choice is made again under them.
                expired = loader.lock(ids, erasure.is_expired(metadata, cutoff))
                rows = erasure.count_rows(conn, metadata, expired)  # its etl_rejects: 0
                loader.erase(expired)
            done.conversations.extend(expired)
            for table, count in rows.items():
                done.rows[table] = done.rows.get(table, 0) + count
    except (DBAPIError, psycopg.Error) as exc:
        error = database_error(
            exc, where, undone="the batches before it stay pruned: run it again for the rest"
        )
        _log_prune(pipeline, report, done, started, error=str(error))
        raise error from None
    _log_prune(pipeline, report, done, started)
    return done


def _log_prune(
    pipeline: Pipeline,
    report: WindowReport,
    done: Erased,
    started: float,
    *,
    error: str | None = None,
) -> None:
    report.pruned = len(done.conversations)
    report.rows = done.rows
    report.seconds = time.monotonic() - started
    report.outcome, report.error = ("failed", error) if error else ("ok", None)
    try:
        with begin_write(pipeline.engine) as conn:
            pipeline.store.log_window(conn, report)
    except DBAPIError:
        log.warning("could not record the prune in etl_runs (the database is unreachable)")
