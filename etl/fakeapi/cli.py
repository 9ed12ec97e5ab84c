"""`etl fake-api`: run the Export API v3 simulator (or save its dataset as an export file)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import fields
from datetime import date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from etl.fakeapi.dataset import Dataset
from etl.fakeapi.faults import Faults
from etl.fakeapi.options import FakeApiOptions
from etl.fakeapi.save import save_export
from etl.fakeapi.server import FakeApi
from etl.fakeapi.synth import DatasetSpec

# Every Faults field: (click type, help). A test checks this covers the dataclass exactly.
FAULT_FLAGS: dict[str, tuple[Any, str]] = {
    "error_after": (int, "After N conversations send an error element and close the array."),
    "error_times": (int, "Apply --error-after to the first K export requests (-1: all)."),
    "only_starts": (
        str,
        "Apply the faults only to windows starting at this instant (ISO 8601; repeatable).",
    ),
    "error_message": (str, "Message of the in-stream error element."),
    "truncate_after": (int, "After N conversations hang up mid-chunk (broken chunked body)."),
    "truncate_times": (int, "Apply --truncate-after to the first K export requests (-1: all)."),
    "truncate_gzip": (bool, "Cut the gzip stream short (forces gzip); chunked body ends cleanly."),
    "truncate_gzip_times": (int, "Apply --truncate-gzip to the first K export requests (-1: all)."),
    "truncate_gzip_after": (int, "Conversations sent before --truncate-gzip cuts the stream."),
    "unterminated_array": (bool, "Send everything but the final ']' and end cleanly."),
    "unterminated_array_times": (int, "Apply --unterminated-array to the first K requests."),
    "omit_post_query_info": (bool, "Leave out the post_query_info element."),
    "omit_post_query_info_times": (int, "Apply --omit-post-query-info to the first K requests."),
    "undercount": (int, "query_info (and post) announce N more conversations than are sent."),
    "undercount_times": (int, "Apply --undercount to the first K export requests (-1: all)."),
    "invalid_json": (bool, "Answer 200 with an HTML error page instead of JSON."),
    "invalid_json_times": (int, "Apply --invalid-json to the first K export requests (-1: all)."),
    "status": (int, "Answer with this HTTP status (429, 500, 503, 401, ...) and an error object."),
    "status_times": (int, "Apply --status to the first K export requests (-1: all)."),
    "retry_after": (str, "Retry-After header value sent with --status (seconds or HTTP date)."),
    "hang_before_headers": (bool, "Read the request and never answer."),
    "hang_before_headers_times": (int, "Apply --hang-before-headers to the first K requests."),
    "stall_after_headers": (bool, "Send headers and '[' then nothing more."),
    "stall_after_headers_times": (int, "Apply --stall-after-headers to the first K requests."),
    "trickle_bytes_per_s": (int, "Send every response body at this many bytes per second."),
    "gzip_bomb": (bool, "Send a small gzip body that inflates to --gzip-bomb-bytes."),
    "gzip_bomb_times": (int, "Apply --gzip-bomb to the first K export requests (-1: all)."),
    "gzip_bomb_bytes": (int, "Inflated size of the gzip bomb in bytes."),
    "stacked_encoding": (bool, "Send 'Content-Encoding: gzip, gzip' (double-compressed body)."),
    "stacked_encoding_times": (int, "Apply --stacked-encoding to the first K requests."),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _fault_options(func: Any) -> Any:
    defaults = Faults()
    for name in reversed([f.name for f in fields(Faults)]):
        kind, help_text = FAULT_FLAGS[name]
        if kind is bool:
            func = click.option(_flag(name), name, is_flag=True, default=False, help=help_text)(
                func
            )
        else:
            default = getattr(defaults, name)
            func = click.option(
                _flag(name),
                name,
                type=kind,
                default=default,
                multiple=isinstance(default, tuple),
                show_default=True,
                help=help_text,
            )(func)
    return func


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 date-time: {value!r}") from None


@click.command("fake-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port to listen on (0: ephemeral).")
@click.option(
    "--token",
    envvar="FAKE_API_TOKEN",
    default="sim-token",
    show_envvar=True,
    help="Static bearer token accepted (a secret: prefer the environment variable).",
)
@click.option("--no-static-token", is_flag=True, help="Accept no static token (OAuth only).")
@click.option("--oauth-client-id", default="sim-client", show_default=True, help="OAuth client id.")
@click.option(
    "--oauth-client-secret",
    envvar="FAKE_API_CLIENT_SECRET",
    default="sim-secret",
    show_envvar=True,
    help="OAuth client secret (a secret: prefer the environment variable).",
)
@click.option("--no-oauth", is_flag=True, help="Disable the OAuth token endpoint's clients.")
@click.option(
    "--oauth-token-ttl", default=300.0, show_default=True, help="OAuth token lifetime (s)."
)
@click.option(
    "--zone", default="Europe/Oslo", show_default=True, help="Server time zone (naive from/to)."
)
@click.option("--seed", default=1, show_default=True, help="Synthetic dataset seed.")
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2024-03-25",
    show_default=True,
    help="First day of the synthetic dataset.",
)
@click.option("--days", default=7, show_default=True, help="Number of days of conversations.")
@click.option("--per-day", default=50, show_default=True, help="Conversations started per day.")
@click.option(
    "--environments",
    default="live,test",
    show_default=True,
    help="Comma-separated environments; the first one gets --first-environment-share.",
)
@click.option(
    "--first-environment-share", default=0.9, show_default=True, help="Share of the first env."
)
@click.option(
    "--messages-per-conversation",
    default=7,
    show_default=True,
    help="Mean messages per conversation (7: ~5 KB, 2: ~1.5 KB).",
)
@click.option(
    "--first-conversation-id", default=1_000_001, show_default=True, help="First conversation id."
)
@click.option("--first-message-id", default=50_000_001, show_default=True, help="First message id.")
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve the conversations of a saved export file (.json/.json.gz) instead.",
)
@click.option(
    "--now",
    help="Fixed server clock (ISO-8601; naive = server zone); later messages do not exist yet.",
)
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the whole dataset as the export file (.json or .json.gz) the API sends for its "
    "whole date range with the default query (environment live), then exit.",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    help="Seconds each export's query takes before the first byte (query_seconds).",
)
@click.option(
    "--rate",
    type=float,
    help="Conversations each export serializes per second (default: as fast as it can).",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    help="Answer at most K exports at once; refuse more with 429 and Retry-After.",
)
@click.option(
    "--deleted-ids",
    default="",
    help="Comma-separated conversation ids deleted at the source: never exported.",
)
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
@_fault_options
def fake_api(**kw: Any) -> None:
    """Run the Export API v3 simulator on loopback until SIGTERM/SIGINT."""
    if kw.pop("verbose"):
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    faults = Faults(**{name: kw.pop(name) for name in FAULT_FLAGS})
    spec = DatasetSpec(
        seed=kw["seed"],
        start=date.fromisoformat(kw["start"].date().isoformat()),
        days=kw["days"],
        per_day=kw["per_day"],
        environments=tuple(e.strip() for e in kw["environments"].split(",") if e.strip()),
        first_environment_share=kw["first_environment_share"],
        messages_per_conversation=kw["messages_per_conversation"],
        first_conversation_id=kw["first_conversation_id"],
        first_message_id=kw["first_message_id"],
    )
    no_oauth = kw["no_oauth"]
    opts = FakeApiOptions(
        host=kw["host"],
        port=kw["port"],
        token=None if kw["no_static_token"] else kw["token"],
        oauth_client_id=None if no_oauth else kw["oauth_client_id"],
        oauth_client_secret=None if no_oauth else kw["oauth_client_secret"],
        oauth_token_ttl=kw["oauth_token_ttl"],
        zone=kw["zone"],
        dataset=spec,
        from_file=kw["from_file"],
        now=_parse_now(kw["now"]),
        latency=kw["latency"],
        rate=kw["rate"],
        max_concurrent=kw["max_concurrent"],
        deleted_ids=_ids(kw["deleted_ids"]),
        faults=faults,
    )
    if kw["save"] is not None:
        dataset = (
            Dataset.from_file(opts.from_file) if opts.from_file else Dataset.build(spec, opts.zone)
        )
        try:
            n = save_export(dataset, kw["save"], opts.zone, opts.now)
        except OSError as exc:
            raise click.UsageError(
                f"--save: cannot write {kw['save']} ({exc.strerror or type(exc).__name__}): "
                "check that its directory exists and is writable"
            ) from None
        click.echo(f"saved {n} conversations to {kw['save']}")
        return
    _serve(opts)


def _ids(text: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of conversation ids",
            param_hint="--deleted-ids",
        ) from None


def _serve(opts: FakeApiOptions) -> None:
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with FakeApi(opts) as api:
            click.echo(f"fake-api listening on {api.url}")
            sys.stdout.flush()
            while not done.wait(0.5):
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
