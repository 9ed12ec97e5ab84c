"""The `etl` command: migrate, run, backfill, load-file, status, report, fake-api."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from etl import env
from etl.config import BAD_CONVERSATION_POLICIES, IGNORE, SOFT, Settings, load_settings
from etl.errors import DatabaseError, EtlError, ExitCode
from etl.secrets import scrub
from etl.windows import Window, parse_instant, plan_windows

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("etl.cli")

EXIT_CODES_HELP = """Exit codes: 0 ok; 1 unexpected error (a bug); 2 configuration or usage;
3 the API refused our credentials; 4 upstream failure after retries; 5 data error;
6 another run holds the lock; 7 database error; 130 interrupted."""


class _Context:
    def __init__(self, config: Path | None, verbosity: int, log_format: str) -> None:
        self.config = config
        self.verbosity = verbosity
        self.log_format = log_format

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, overrides=overrides)


pass_ctx = click.make_pass_decorator(_Context)


class _Commands(click.Group):
    """The commands; the simulator's is imported only when asked for (it costs a run ~0.1 s)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "fake-api"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "fake-api":
            from etl.fakeapi.cli import fake_api

            return fake_api
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, epilog=EXIT_CODES_HELP)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=env.CONFIG,
    help="TOML config file (default: none; env ETL_CONFIG). Flags > environment > file > defaults.",
)
@click.option("-v", "--verbose", count=True, help="More detail (debug logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    show_default=True,
    help="Log lines for people, or JSON lines for schedulers.",
)
@click.version_option(package_name="convo-etl")
@click.pass_context
def cli(
    ctx: click.Context, config: Path | None, verbose: int, quiet: bool, log_format: str
) -> None:
    """Load a chatbot platform's conversations from its Export API v3 into a SQL warehouse."""
    from etl.log import setup_logging

    verbosity = -1 if quiet else verbose
    setup_logging(verbosity, log_format)
    ctx.obj = _Context(config, verbosity, log_format)


def _instant(settings: Settings, value: str, option: str) -> datetime:
    try:
        return parse_instant(value, settings.pipeline.timezone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@cli.command()
@click.option("--sql", "as_sql", is_flag=True, help="Print the DDL instead of applying it.")
@pass_ctx
def migrate(obj: _Context, as_sql: bool) -> None:
    """Bring the warehouse schema to the latest revision (Alembic `upgrade head`), and its
    local dates to reporting.timezone (recomputed when the setting changed)."""
    from etl.load import migrate as migrations

    settings = obj.settings()
    wh = settings.warehouse
    if as_sql:
        click.echo(migrations.upgrade_sql(wh.url, wh.schema))
        return
    from etl.load.engine import make_engine
    from etl.load.localtime import zone_name

    engine = make_engine(wh.url)
    zone = settings.reporting.timezone
    try:
        recomputed = _with_db_errors(
            lambda: _upgrade(engine, wh.schema, zone, wh.display_url),
            f"migrating {wh.display_url}",
            "the schema is as the last completed step left it: check the database, run it again",
        )
    finally:
        engine.dispose()
    log.info("warehouse %s is at schema revision %s", wh.display_url, migrations.head_revision())
    if recomputed is not None:
        log.info(
            "local dates of %d conversations computed for the reporting time zone %s",
            recomputed,
            zone_name(zone),
        )


def _bad_conversation_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--on-bad-conversation",
        type=click.Choice(BAD_CONVERSATION_POLICIES),
        help=(
            "What a conversation that cannot be loaded does (default: pipeline.on_bad_conversation"
            ', "fail"): fail its window, or go whole to etl_rejects while the rest loads.'
        ),
    )(command)


def _policy(value: str | None) -> dict[str, Any]:
    return {"pipeline.on_bad_conversation": value} if value else {}


def _workers_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        help=(
            "Windows loaded at once (default: pipeline.workers, 1). Other runs may load the "
            "same range meanwhile: each window is claimed in the warehouse (etl_windows)."
        ),
    )(command)


def _parallel(workers: int | None) -> dict[str, Any]:
    return {"pipeline.workers": workers} if workers else {}


def _finished(command: str, result: Any) -> None:
    skipped = f", {len(result.skipped)} left to another run" if result.skipped else ""
    log.info(
        "%s finished: %d window(s), %d conversations%s",
        command,
        len(result.windows),
        result.conversations,
        skipped,
    )


@cli.command()
@click.option("--until", help="Stop at this date or date-time instead of now − lag.")
@click.option(
    "--dry-run", is_flag=True, help="Print the windows that would be loaded, load nothing."
)
@_bad_conversation_option
@_workers_option
@pass_ctx
def run(
    obj: _Context,
    until: str | None,
    dry_run: bool,
    on_bad_conversation: str | None,
    workers: int | None,
) -> None:
    """Load every window from the watermark (or pipeline.start) up to now − lag."""
    settings = obj.settings(**_policy(on_bad_conversation), **_parallel(workers))
    settings.require_api()
    pipeline = _pipeline(obj, settings, "run")
    try:
        end = _instant(settings, until, "--until") if until else None
        if dry_run:
            pipeline.check_schema(loads=False)
            _print_windows(pipeline.plan_run(end))
            return
        with pipeline.lock_for_windows():
            pipeline.check_schema()
            windows = pipeline.plan_run(end)
            if windows:
                _finished("run", pipeline.run(windows))
            elif end is not None:
                log.info("up to date: the watermark is at or past --until; nothing to load")
            else:
                log.info("up to date: the watermark is within pipeline.lag of now; nothing to load")
        retention = settings.warehouse.retention
        if retention is not None:
            from etl.pipeline import personal

            _pruned(personal.prune(pipeline, datetime.now(UTC) - retention), retention=retention)
    finally:
        pipeline.close()


@cli.command()
@click.option(
    "--from",
    "from_",
    required=True,
    help="Start (a date in pipeline.timezone, or a date-time with offset).",
)
@click.option("--to", "to", required=True, help="End, exclusive.")
@click.option("--window", "window", help="Window size, e.g. 1h, 6h, 1d (default: pipeline.window).")
@click.option("--dry-run", is_flag=True, help="Print the windows, load nothing.")
@click.option(
    "--detect-deletes",
    is_flag=True,
    help=(
        "After each complete window, mark the stored conversations its export no longer "
        'returns as deleted (pipeline.deletes: "soft" unless it says "hard").'
    ),
)
@_bad_conversation_option
@_workers_option
@pass_ctx
def backfill(
    obj: _Context,
    from_: str,
    to: str,
    window: str | None,
    dry_run: bool,
    detect_deletes: bool,
    on_bad_conversation: str | None,
    workers: int | None,
) -> None:
    """(Re)load a date range, idempotently; never moves the watermark backwards."""
    settings = obj.settings(
        **({"pipeline.window": window} if window else {}),
        **_policy(on_bad_conversation),
        **_parallel(workers),
    )
    if detect_deletes and settings.pipeline.deletes == IGNORE:
        settings = dataclasses.replace(
            settings, pipeline=dataclasses.replace(settings.pipeline, deletes=SOFT)
        )
    settings.require_api()
    start, end = _instant(settings, from_, "--from"), _instant(settings, to, "--to")
    if start >= end:
        raise click.BadParameter(
            f"--from {from_} is not before --to {to}", param_hint="--from/--to"
        )
    windows = list(plan_windows(start, end, settings.pipeline.window))
    if dry_run:
        _print_windows(windows)
        return
    pipeline = _pipeline(obj, settings, "backfill")
    try:
        with pipeline.lock_for_windows():
            pipeline.check_schema()
            result = pipeline.backfill(windows)
        _finished("backfill", result)
    finally:
        pipeline.close()


@cli.command("load-file")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--replace",
    is_flag=True,
    help=(
        "Let the files' conversations replace stored copies whatever their export times (by "
        "default a copy from an older export, or from a file without query_info.current_time, "
        "does not replace one from a known, later export)."
    ),
)
@_bad_conversation_option
@pass_ctx
def load_file(
    obj: _Context, paths: tuple[Path, ...], replace: bool, on_bad_conversation: str | None
) -> None:
    """Load saved export files (.json or .json.gz, the array as the API sends it)."""
    settings = obj.settings(**_policy(on_bad_conversation))
    pipeline = _pipeline(obj, settings, "load-file")
    try:
        with pipeline.lock():
            pipeline.check_schema()
            result = pipeline.load_files(paths, replace=replace)
        log.info("loaded %d file(s), %d conversations", len(result.windows), result.conversations)
    finally:
        pipeline.close()


@cli.command("reprocess-rejects")
@pass_ctx
def reprocess_rejects(obj: _Context) -> None:
    """Load the quarantined conversations (etl_rejects) again; remove those that load."""
    settings = obj.settings()
    pipeline = _pipeline(obj, settings, "reprocess-rejects")
    try:
        with pipeline.lock():
            pipeline.check_schema()
            counts = pipeline.reprocess_rejects()
        from etl.pipeline.progress import describe_outcomes

        log.info("reprocess-rejects: %s", describe_outcomes(counts))
    finally:
        pipeline.close()


@cli.command()
@click.option(
    "--conversation-id",
    "ids",
    multiple=True,
    type=click.IntRange(-(2**63), 2**63 - 1),
    help="A conversation id (repeatable).",
)
@click.option("--reference", "references", multiple=True, help="A conversation reference.")
@click.option(
    "--authentication-identifier",
    "identifiers",
    multiple=True,
    help="Every conversation of this authenticated end user.",
)
@click.option(
    "--from-file",
    "request_file",
    type=click.File("r", encoding="utf-8-sig"),  # a file saved with a byte-order mark too
    help=(
        "Read what to erase from this file ('-': standard input), one per line as "
        "conversation-id:ID, reference:REF or authentication-identifier:X, so that the "
        "person's identifiers appear in no command line (ps, shell history)."
    ),
)
@click.option("--dry-run", is_flag=True, help="Say what would be erased, erase nothing.")
@pass_ctx
def forget(
    obj: _Context,
    ids: tuple[int, ...],
    references: tuple[str, ...],
    identifiers: tuple[str, ...],
    request_file: TextIO | None,
    dry_run: bool,
) -> None:
    """Erase conversations for good (a person's erasure request): every row, the quarantined
    copies, a tombstone per conversation id, and the references and identifiers asked for,
    hashed: no later load brings any of them back."""
    if request_file is not None:
        more = _erasure_request(request_file)
        ids = (*ids, *more[0])
        references = (*references, *more[1])
        identifiers = (*identifiers, *more[2])
    if not (ids or references or identifiers):
        raise click.UsageError(
            "name what to erase: --conversation-id, --reference or --authentication-identifier"
        )
    if any(not value.strip() for value in (*references, *identifiers)):
        # An unset shell variable, say: erasing "" would keep out every conversation with an
        # empty reference or identifier, for good.
        raise click.UsageError("an empty --reference or --authentication-identifier names no one")
    from etl.pipeline import personal

    settings = obj.settings()
    pipeline = _pipeline(obj, settings, "forget")
    try:
        pipeline.check_schema(loads=False)
        erased = personal.forget(
            pipeline, ids=ids, references=references, identifiers=identifiers, dry_run=dry_run
        )
    finally:
        pipeline.close()
    stored = erased.rows.get("conversations", 0)
    found = (
        f"{len(erased.conversations)} conversation(s) ({stored} stored; ids "
        f"{_ids(erased.conversations)})"
        if erased.conversations
        else "no stored conversation"
    )
    kept_out = []
    if erased.conversations and not dry_run:
        kept_out.append("tombstones keep them from being loaded again")
    if erased.recorded:
        kept_out.append(
            f"{erased.recorded} reference(s) and identifier(s) "
            f"{'would be' if dry_run else 'are'} recorded, hashed: no load stores a "
            "conversation or quarantined copy that has one"
        )
    log.info(
        "forget: %s %s; rows: %s%s",
        "would erase" if dry_run else "erased",
        found,
        _counts(erased.rows),
        "".join(f"; {what}" for what in kept_out),
    )


@cli.command()
@click.option(
    "--older-than", help="Age of the last message, e.g. 400d (default: warehouse.retention)."
)
@click.option("--before", help="Or: a last message before this date (pipeline.timezone).")
@click.option("--dry-run", is_flag=True, help="Say what would be pruned, prune nothing.")
@pass_ctx
def prune(obj: _Context, older_than: str | None, before: str | None, dry_run: bool) -> None:
    """Remove the conversations whose last message is older than the retention period, in
    small transactions (dashboards keep reading); `etl run` does it at its end when
    warehouse.retention is set."""
    if older_than and before:
        raise click.UsageError("give --older-than or --before, not both")
    settings = obj.settings(**({"warehouse.retention": older_than} if older_than else {}))
    retention = settings.warehouse.retention
    if before:
        cutoff = _instant(settings, before, "--before")
    elif retention is not None:
        cutoff = datetime.now(UTC) - retention
    else:
        raise click.UsageError(
            "no retention period: give --older-than (e.g. 400d) or --before, or set "
            "warehouse.retention"
        )
    from etl.pipeline import personal

    pipeline = _pipeline(obj, settings, "prune")
    try:
        pipeline.check_schema(loads=False)
        pruned = personal.prune(pipeline, cutoff, dry_run=dry_run)
    finally:
        pipeline.close()
    _pruned(pruned, retention=None if before else retention)


def _erasure_request(lines: Iterable[str]) -> tuple[list[int], list[str], list[str]]:
    """The ids, references and identifiers of an erasure request file (forget --from-file);
    a line it cannot read is a usage error naming its number, never its text."""
    ids: list[int] = []
    references: list[str] = []
    identifiers: list[str] = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        kind, _, value = line.partition(":")
        kind = kind.strip()
        if kind == "conversation-id" and value.strip().lstrip("-").isdigit():
            if not -(2**63) <= int(value) < 2**63:
                raise click.UsageError(f"--from-file, line {number}: the id is beyond bigint")
            ids.append(int(value))
        elif kind == "reference" and value:
            references.append(value)
        elif kind == "authentication-identifier" and value:
            identifiers.append(value)
        else:
            raise click.UsageError(
                f"--from-file, line {number}: write conversation-id:ID, reference:REF or "
                "authentication-identifier:X"
            )
    return ids, references, identifiers


def _pruned(pruned: Any, *, retention: timedelta | None) -> None:
    period = f"older than {retention}" if retention else "before the cut-off"
    log.info(
        "prune: %s %d conversation(s) whose last message is %s; rows: %s",
        "would remove" if pruned.dry_run else "removed",
        len(pruned.conversations),
        period,
        _counts(pruned.rows),
    )


def _ids(ids: list[int], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(map(str, ids[:shown])) + more


def _counts(rows: dict[str, int]) -> str:
    return ", ".join(f"{table} {count}" for table, count in rows.items() if count) or "none"


@cli.command()
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "prometheus"]),
    help=(
        "text (the default), json, or prometheus: the Prometheus text format, for "
        "node_exporter's textfile collector."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option(
    "--runs",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many recent windows to list.",
)
@pass_ctx
def status(obj: _Context, output: str | None, as_json: bool, runs: int) -> None:
    """Watermark, lag behind now, the last windows loaded, row counts per table."""
    from etl.load.engine import make_engine
    from etl.load.schema import build_metadata
    from etl.pipeline.status import collect_status, format_status, prometheus_text

    if as_json and output not in (None, "json"):
        raise click.BadParameter(f"--json is --format json, not {output}", param_hint="--json")
    output = output or ("json" if as_json else "text")
    settings = obj.settings()
    engine = make_engine(settings.warehouse.url, must_exist=True)
    try:
        snapshot = _with_db_errors(
            lambda: collect_status(engine, build_metadata(settings.warehouse.schema), runs=runs),
            f"reading {settings.warehouse.display_url}",
            "no status could be read: check the database",
            reading=True,
        )
    except EtlError:
        if output == "prometheus":  # still valid output for a scraper: convo_etl_up 0
            click.echo(prometheus_text(None), nl=False)
        raise
    finally:
        engine.dispose()
    if output == "prometheus":
        click.echo(prometheus_text(snapshot), nl=False)
    else:
        click.echo(
            json.dumps(snapshot, indent=2, default=str)
            if output == "json"
            else format_status(snapshot)
        )


def _local_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date: write 2024-03-25 (a local date in reporting.timezone)",
            param_hint=option,
        ) from None


@cli.command()
@click.option(
    "--from", "from_", required=True, help="First local date (YYYY-MM-DD, reporting.timezone)."
)
@click.option("--to", "to", required=True, help="End local date, exclusive.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (replaced if it exists).",
)
@click.option("--environment", help='Only this environment, e.g. "live" (default: all).')
@pass_ctx
def report(obj: _Context, from_: str, to: str, out: Path, environment: str | None) -> None:
    """Write one self-contained HTML report (charts and tables, opens offline) of the
    metric views over local dates [--from, --to)."""
    settings = obj.settings()
    start, end = _local_date(from_, "--from"), _local_date(to, "--to")
    if start >= end:
        raise click.BadParameter(
            f"--from {from_} is not before --to {to}", param_hint="--from/--to"
        )
    from etl.report import require_renderer, write_report

    require_renderer()  # before touching the warehouse: the install command, not a traceback
    from etl.load.engine import make_engine

    engine = make_engine(settings.warehouse.url, must_exist=True)
    try:
        data = _with_db_errors(
            lambda: write_report(
                engine, settings, out, start=start, end=end, environment=environment
            ),
            f"reading {settings.warehouse.display_url}",
            "no report was written: check the database and the role's grants",
            reading=True,
        )
    finally:
        engine.dispose()
    log.info(
        "report of %s to %s (%s, %d conversations) written to %s",
        start.isoformat(),
        end.isoformat(),
        data.timezone,
        data.totals.conversations,
        out,
    )


def _print_windows(windows: list[Window]) -> None:
    for window in windows:
        click.echo(f"{window.start.isoformat()}  {window.end.isoformat()}")
    click.echo(f"{len(windows)} window(s)", err=True)


def _pipeline(obj: _Context, settings: Settings, command: str) -> Any:
    from etl.pipeline.runner import Pipeline

    progress = None
    if sys.stderr.isatty() and obj.verbosity >= 0 and obj.log_format == "plain":
        from etl.pipeline.terminal import TerminalProgress

        progress = TerminalProgress()
    return Pipeline(settings, command=command, progress=progress)


def _upgrade(engine: Engine, schema: str | None, zone: tzinfo, shown: str) -> int | None:
    """etl.load.migrate.upgrade, saying what to do when an object of the user's own stands in
    its way."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    from etl.load import migrate as migrations
    from etl.load.revision import current_revision, refuse_newer_revision

    refuse_newer_revision(current_revision(engine, schema), shown)
    try:
        return migrations.upgrade(engine, schema, reporting_zone=zone)
    except DBAPIError as exc:
        if not isinstance(exc.orig, psycopg.errors.DependentObjectsStillExist):
            raise
        diag = exc.orig.diag
        detail = (diag.message_detail or diag.message_primary or "").splitlines()[0]
        raise DatabaseError(
            f"migrating {shown}: a migration step recreates the metric views, and an object of "
            f"yours depends on them ({detail}); nothing was changed: drop it, run `etl migrate`, "
            "then create it again"
        ) from None


def _with_db_errors(
    action: Callable[[], Any], where: str, undone: str, *, reading: bool = False
) -> Any:
    from sqlalchemy.exc import DBAPIError

    from etl.pipeline.runner import database_error

    try:
        return action()
    except DBAPIError as exc:
        raise database_error(exc, where, undone=undone, reading=reading) from None


def _terminate(signum: int, _frame: Any) -> NoReturn:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: maps errors to documented exit codes, never a bare traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="etl", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # Every command writes in transactions: a window, an erasure, a batch of a prune.
        _fail(
            ExitCode.INTERRUPTED,
            "interrupted: the transaction in progress (a window, an erasure, a prune's batch) "
            "was rolled back; run the command again to resume",
        )
    except click.ClickException as exc:
        if not logging.getLogger().handlers and _json_asked(sys.argv[1:] if argv is None else argv):
            # Refused before the group's options were taken (an unknown command, --config
            # naming a directory): logging is not set up yet, but a scheduler asked for JSON.
            from etl.log import setup_logging

            setup_logging(0, "json")
        if _logging_json():  # a usage error is one more JSON line, not a plain-text block
            _fail(ExitCode.CONFIG, f"usage: {exc.format_message()} (see etl --help)")
        exc.show()
        sys.exit(ExitCode.CONFIG)
    except EtlError as exc:
        _fail(exc.exit_code, str(exc))
    except Exception as exc:
        if logging.getLogger("etl").isEnabledFor(logging.DEBUG):
            # Through the log, so that with --log-format json the traceback is a field of one
            # JSON line (scrubbed there) instead of a block of plain text among them.
            log.debug("the traceback of what follows", exc_info=True)
        _fail(
            ExitCode.FAILURE,
            f"unexpected {type(exc).__name__}: {exc}. This is a bug; rerun with -v for details and report it",
        )
    sys.exit(ExitCode.OK)


def entry_point() -> NoReturn:
    """The `etl` console script: main(), then exit without the interpreter's teardown.

    Tearing down SQLAlchemy, psycopg and the rest module by module takes a quarter of a second
    after the work is committed and reported; the logs and standard streams are flushed
    first, and nothing else is left to do. main() itself exits normally for embedders.
    """
    code: int = ExitCode.FAILURE
    # A load allocates millions of short-lived, acyclic objects (parsed JSON, rows): collect
    # less often, and never scan the objects start-up left (modules, classes) again.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # The loading thread waits on the warehouse some sixteen times a batch while other threads
    # of the process may be busy (with --workers N, other windows' loading threads making
    # rows, a run loop unpickling a batch); after each wait it needs the GIL back, which a
    # busy thread gives up only every switch interval (5 ms by default). Those hand-offs, not
    # the warehouse, then set the pace of a load (bench/README.md, "Where a load's time
    # goes").
    sys.setswitchinterval(0.001)
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - main() maps everything; report what it could not
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or a broken pipe: nothing more to tell
                pass
        os._exit(code)


def _json_asked(args: list[str]) -> bool:
    """Whether the command line asks for JSON log lines (--log-format json, or =json)."""
    return "--log-format=json" in args or any(
        a == "--log-format" and b == "json" for a, b in itertools.pairwise(args)
    )


def _logging_json() -> bool:
    from etl.log import JsonFormatter

    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def _fail(code: ExitCode, message: str) -> NoReturn:
    log.error(scrub(message))
    sys.exit(int(code))


__all__ = ["cli", "entry_point", "main"]
