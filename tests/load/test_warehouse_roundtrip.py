"""Every exported value can be recovered from the warehouse tables alone, on SQLite and PostgreSQL.

Each dataset goes through the real command (`etl load-file`) into a freshly migrated warehouse.
The conversations are then rebuilt as nested JSON from the five data tables only
(conversations, messages, content, buttons, intent_analysis): not from the intents/actions
dimension tables, and not from `conversations.raw` (off by default). The rebuild must equal the
export's conversation after the documented normalizations only (docs/schema.md), each one a
small named function below:

(a) `drop_type_tags`: the fixed `type` tags are dropped where they have their documented value;
(b) `times_as_utc_instants`: timestamps compare as instants in UTC, to the microsecond;
(c) `prune`: null and absent mean the same for a known key (nulls and empty containers pruned,
    on both sides);
(d) `restore_originals`: NUL and lone surrogates are replaced in the columns, the original is in
    `extra["_original"]`;
(e) `unescape_extra_keys`: source keys starting with "_" are stored with one more "_" in a row's
    `extra`.

Datasets: the seed example, a simulator export of 5,000+ conversations (with earlier, shorter
copies loaded first, and masked re-exports), and hand-written conversations, one per odd case.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from etl.load.schema import UTCDateTime, build_metadata
from tests.conftest import SEED_EXPORT, TestWarehouse, _pg_schema
from tests.pipeline.cli_helpers import etl

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

# --- the export side: the documented normalizations ------------------------------------------

KNOWN_MESSAGE_TYPES = frozenset({"question", "answer"})
KNOWN_CONTENT_TYPES = frozenset({"text", "image", "video", "json", "link", "ssml"})


def _is_known(value: Any, known: frozenset[str]) -> bool:
    return isinstance(value, str) and value in known


def _drop_tag(obj: Any, tag: str) -> None:
    if isinstance(obj, dict) and obj.get("type") == tag:
        del obj["type"]


def _known_type_messages(conv: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Messages the normalizer splits (question/answer); other types are kept verbatim."""
    for msg in conv.get("messages") or ():
        if isinstance(msg, dict) and _is_known(msg.get("type"), KNOWN_MESSAGE_TYPES):
            yield msg


def drop_type_tags(conv: dict[str, Any]) -> dict[str, Any]:
    """(a) The `type` tag of an object with a fixed type is not stored when it has its
    documented value ("conversation", "question_analysis", "intent", "action", "button"); any
    other value is kept in `extra.type`. Only objects the normalizer takes apart have a tag:
    inside an undocumented message type or content type everything is kept verbatim, tags too.
    """
    _drop_tag(conv, "conversation")
    for msg in _known_type_messages(conv):
        question = msg.get("question")
        _drop_tag(question, "question_analysis")
        analysis = question.get("analysis") if isinstance(question, dict) else None
        for item in analysis if isinstance(analysis, list) else ():
            if isinstance(item, dict):
                _drop_tag(item.get("intent"), "intent")
        for group, tag, names in (
            ("intents", "intent", ("predicted", "came_from")),
            ("actions", "action", ("displayed", "came_from")),
        ):
            refs = msg.get(group)
            if isinstance(refs, dict):
                for name in names:
                    _drop_tag(refs.get(name), tag)
        _drop_tag(msg.get("button_clicked"), "button")
        content = msg.get("content")
        for item in content if isinstance(content, list) else ():
            if isinstance(item, dict) and _is_known(item.get("type"), KNOWN_CONTENT_TYPES):
                buttons = item.get("buttons")
                for button in buttons if isinstance(buttons, list) else ():
                    _drop_tag(button, "button")
    return conv


def instant(value: datetime) -> str:
    """One text per instant: UTC, microseconds always written."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(obj: Any, key: str) -> None:
    if isinstance(obj, dict) and isinstance(obj.get(key), str):
        # fromisoformat reads the offset and keeps microseconds (digits beyond are dropped),
        # as the normalizer does.
        obj[key] = instant(datetime.fromisoformat(obj[key]))


def times_as_utc_instants(conv: dict[str, Any]) -> dict[str, Any]:
    """(b) The warehouse keeps the instant of a timestamp, in UTC, to the microsecond, not its
    offset. Timestamps with a column: time.created, time.last_message_created, every message's
    time, and the time of each content item of a question/answer message (whatever its type).
    """
    for key in ("created", "last_message_created"):
        _parse_time(conv.get("time"), key)
    for msg in conv.get("messages") or ():
        _parse_time(msg, "time")
    for msg in _known_type_messages(conv):
        content = msg.get("content")
        for item in content if isinstance(content, list) else ():
            _parse_time(item, "time")
    return conv


def prune(value: Any) -> Any:
    """(c) Null and absent mean the same for a known key, and an empty container holds no leaf:
    the warehouse does not tell them apart (tests/normalize/test_lossless.py's `_prune`)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = prune(item)
                if item:
                    out[key] = item
            elif item is not None:
                out[key] = item
        return out
    if isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, dict | list):
                item = prune(item)
                if item:
                    items.append(item)
            elif item is not None:
                items.append(item)
        return items
    return value


def expected_conversation(conv: dict[str, Any]) -> Any:
    """The exported conversation (a freshly parsed copy: changed in place), with only (a), (b)
    and (c) applied."""
    return prune(times_as_utc_instants(drop_type_tags(conv)))


# --- the warehouse side: rebuilding from the five data tables ---------------------------------


def restore_originals(row: dict[str, Any]) -> dict[str, Any]:
    """(d) A column whose value had a NUL or a lone surrogate holds it with U+FFFD instead, and
    the row's extra has `_original: {column: json.dumps(original)}` (`extra` itself when the
    extra had one): put the originals back, drop `_original`."""
    extra = row.get("extra")
    if isinstance(extra, dict) and "_original" in extra:
        extra = dict(extra)
        originals = extra.pop("_original")
        for column, escaped in originals.items():
            if column == "extra":
                extra = json.loads(escaped)
            else:
                row[column] = json.loads(escaped)
        row["extra"] = extra
    return row


def unescape_extra_keys(extra: dict[str, Any]) -> dict[str, Any]:
    """(e) Keys starting with "_" are the warehouse's own (`_original`, `_value`) in a row's
    extra, so a source key "_foo" is stored as "__foo" (only at the extra's top level)."""
    return {(k[1:] if k.startswith("__") else k): v for k, v in extra.items()}


class RebuildError(AssertionError):
    """What the tables hold cannot be one exported conversation (a key stored twice)."""


def _merge(built: dict[str, Any], extra: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Put a row's extra into the object built from its columns (nested keys stay nested)."""
    for key, value in extra.items():
        current = built.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value, f"{path}.{key}")
        elif prune(current) in (None, {}, []):  # nothing from a column there
            built[key] = value
        else:
            raise RebuildError(
                f"{path}.{key} is stored twice: {current!r} in columns, {value!r} in extra"
            )
    return built


_NOT_AN_ITEM = object()


def _restore(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(columns, extra as exported, the item when the row stands for a non-object list item)."""
    columns = restore_originals(dict(row))
    extra = columns.get("extra") or {}
    # "_value" is reserved (a source "_value" is stored as "__value"): a list item that was
    # not an object, e.g. a string in `content`.
    item = extra["_value"] if "_value" in extra else _NOT_AN_ITEM
    return columns, unescape_extra_keys(extra), item


def _pick(row: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    return {key: row[column] for key, column in mapping.items() if row[column] is not None}


def _same(*keys: str) -> dict[str, str]:
    return {k: k for k in keys}


CONVERSATION_KEYS = _same(
    "id",
    "reference",
    "environment",
    "reviewed",
    "quality_label",
    "authentication_identifier",
    "user_information",
)
TIME_KEYS = {"created": "created_at", "last_message_created": "last_message_at"}
MESSAGE_KEYS = _same(
    "id",
    "time",
    "type",
    "is_human_chat",
    "session_id",
    "source_url",
    "device",
    "system_action_trigger",
    "human_agent",
    "matched_filter",
    "sent_filter_values",
)
QUESTION_KEYS = _same("input", "predicted_language", "sentiment", "labels", "important_words")
INTENT_REFS = {
    name: {k: f"{name}_intent_{k}" for k in ("id", "title", "inherit_skill")}
    for name in ("predicted", "came_from")
}
ACTION_REFS = {
    name: {
        "id": f"{name}_action_id",
        "action_type": f"{name}_action_type",
        "language": f"{name}_action_language",
        "transfer_to_human": f"{name}_action_transfer_to_human",
    }
    for name in ("displayed", "came_from")
}
CLICKED_KEYS = {
    k: f"clicked_button_{k.removeprefix('button_')}"
    for k in ("id", "button_type", "text", "url", "hidden", "source_url")
}
CONTENT_KEYS = _same(
    "type", "time", "text", "url", "video_type", "video_fullscreen", "ssml", "json"
)
BUTTON_KEYS = {"id": "button_id", **_same("button_type", "text", "url", "hidden", "attributes")}
ANALYSIS_KEYS = _same("processed", "translated", "winner")
ANALYSIS_INTENT_KEYS = {
    "id": "intent_id",
    "title": "intent_title",
    "inherit_skill": "intent_inherit_skill",
}
# Columns of `conversations` that record the load, not the export.
LOAD_COLUMNS = frozenset({"raw", "content_hash", "exported_at", "loaded_at", "load_run_id"})


@dataclass
class Tables:
    """The rows of the five data tables, grouped by their parent."""

    conversations: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    content: dict[tuple[int, int], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    buttons: dict[tuple[int, int, int], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    analysis: dict[tuple[int, int], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def read_tables(wh: TestWarehouse) -> Tables:
    """SQLAlchemy Core selects of the five data tables (JSON as Python values, times as UTC)."""
    metadata = build_metadata(wh.schema)

    def table(name: str) -> Any:
        return metadata.tables[f"{wh.schema}.{name}" if wh.schema else name]

    def rows(
        name: str, *order: str, skip: frozenset[str] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        t = table(name)
        columns = [c for c in t.c if c.name not in skip]
        names = [c.name for c in columns]
        times = [i for i, c in enumerate(columns) if isinstance(c.type, UTCDateTime)]
        for row in conn.execute(select(*columns).order_by(*(t.c[o] for o in order))):
            values = list(row)
            for i in times:
                if values[i] is not None:
                    values[i] = instant(values[i])
            yield dict(zip(names, values, strict=True))

    out = Tables()
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            out.conversations = list(rows("conversations", "id", skip=LOAD_COLUMNS))
            for m in rows("messages", "conversation_id", "position"):
                out.messages[m["conversation_id"]].append(m)
            for c in rows("content", "message_id", "position"):
                out.content[c["conversation_id"], c["message_id"]].append(c)
            for b in rows("buttons", "message_id", "content_position", "position"):
                out.buttons[b["conversation_id"], b["message_id"], b["content_position"]].append(b)
            for a in rows("intent_analysis", "message_id", "position"):
                out.analysis[a["conversation_id"], a["message_id"]].append(a)
    finally:
        engine.dispose()
    return out


def _rebuild_button(row: dict[str, Any], path: str) -> Any:
    columns, extra, item = _restore(row)
    if item is not _NOT_AN_ITEM:
        return item
    return _merge(_pick(columns, BUTTON_KEYS), extra, path)


def _rebuild_content(t: Tables, cid: int, mid: int, row: dict[str, Any], path: str) -> Any:
    columns, extra, item = _restore(row)
    if item is not _NOT_AN_ITEM:
        return item
    built = _pick(columns, CONTENT_KEYS)
    buttons = t.buttons.get((cid, mid, row["position"]), [])
    if buttons:
        built["buttons"] = [_rebuild_button(b, f"{path}.buttons[{b['position']}]") for b in buttons]
    return _merge(built, extra, path)


def _rebuild_analysis(row: dict[str, Any], path: str) -> Any:
    columns, extra, item = _restore(row)
    if item is not _NOT_AN_ITEM:
        return item
    built = _pick(columns, ANALYSIS_KEYS)
    built["intent"] = _pick(columns, ANALYSIS_INTENT_KEYS)
    return _merge(built, extra, path)


def _rebuild_message(t: Tables, cid: int, row: dict[str, Any], path: str) -> dict[str, Any]:
    columns, extra, _ = _restore(row)
    mid = row["id"]
    msg = _pick(columns, MESSAGE_KEYS)
    question = _pick(columns, QUESTION_KEYS)
    question["analysis"] = [
        _rebuild_analysis(a, f"{path}.question.analysis[{a['position']}]")
        for a in t.analysis.get((cid, mid), [])
    ]
    msg["question"] = question
    msg["intents"] = {name: _pick(columns, refs) for name, refs in INTENT_REFS.items()}
    msg["actions"] = {name: _pick(columns, refs) for name, refs in ACTION_REFS.items()}
    msg["button_clicked"] = _pick(columns, CLICKED_KEYS)
    msg["content"] = [
        _rebuild_content(t, cid, mid, c, f"{path}.content[{c['position']}]")
        for c in t.content.get((cid, mid), [])
    ]
    return _merge(msg, extra, path)


def rebuild_conversation(t: Tables, row: dict[str, Any]) -> dict[str, Any]:
    """One conversation as nested JSON, from its rows only."""
    columns, extra, _ = _restore(row)
    cid = row["id"]
    conv = _pick(columns, CONVERSATION_KEYS)
    conv["time"] = _pick(columns, TIME_KEYS)
    conv["messages"] = [
        _rebuild_message(t, cid, m, f"messages[{m['position']}]") for m in t.messages.get(cid, [])
    ]
    return _merge(conv, extra, "conversation")


# --- comparing ------------------------------------------------------------------------------


def canonical(value: Any, *, indent: int | None = None) -> str:
    """JSON text with sorted keys: tells true from 1 and 1.0 from 1 (== does not)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, indent=indent)


@dataclass
class Expected:
    """A dataset's conversations as exported (the copy loaded last), normalized."""

    values: dict[int, Any]
    texts: dict[int, str]  # canonical(values[id])
    message_counts: dict[int, int]

    @classmethod
    def of(cls, files: list[Path]) -> Expected:
        exported: dict[int, dict[str, Any]] = {}
        for path in files:  # in load order: each file is a later export than the one before
            exported.update((c["id"], c) for c in conversations_of(path))
        counts = {cid: len(c["messages"]) for cid, c in exported.items()}
        values = {cid: expected_conversation(c) for cid, c in exported.items()}
        return cls(values, {cid: canonical(v) for cid, v in values.items()}, counts)


@dataclass
class Loaded:
    """One dataset in one warehouse: what was exported and what the tables give back."""

    expected: Expected
    rebuilt: dict[int, Any]  # id -> rebuilt conversation (pruned), or the RebuildError
    message_counts: dict[int, int | None]


def conversations_of(path: Path) -> list[dict[str, Any]]:
    elements = json.loads(path.read_bytes())
    return [e for e in elements if isinstance(e, dict) and e.get("type") == "conversation"]


def assert_roundtrip(loaded: Loaded, ids: list[int] | None = None) -> None:
    """For each conversation id: rebuilt == expected, as canonical JSON."""
    expected = loaded.expected
    if ids is None:
        assert sorted(loaded.rebuilt) == sorted(expected.texts), "conversation ids differ"
        ids = sorted(expected.texts)
    differing: list[int] = []
    for cid in ids:
        got = loaded.rebuilt.get(cid)
        if isinstance(got, RebuildError) or canonical(got) != expected.texts[cid]:
            differing.append(cid)
    if differing:
        first = differing[0]
        got = loaded.rebuilt.get(first)
        if isinstance(got, RebuildError):
            detail = f"the rebuild failed: {got}"
        else:
            want = canonical(expected.values[first], indent=1)
            detail = "\n".join(
                difflib.unified_diff(
                    want.splitlines(),
                    canonical(got, indent=1).splitlines(),
                    "export (normalized)",
                    "warehouse (rebuilt)",
                    lineterm="",
                    n=4,
                )
            )
        pytest.fail(
            f"{len(differing)} of {len(ids)} conversation(s) differ, ids {differing[:10]}; "
            f"first differing conversation: {first}\n{detail}",
            pytrace=False,
        )
    for cid in ids:
        count = expected.message_counts[cid]
        assert loaded.message_counts[cid] == count, f"conversation {cid}: message_count"


# --- warehouses, loaded once per dataset and database in this module --------------------------


class Warehouses:
    """Each (database, dataset) migrated and loaded once, through `etl load-file`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.loaded: dict[tuple[str, str], Loaded] = {}
        self.expected: dict[str, Expected] = {}
        self.failed: dict[tuple[str, str], BaseException] = {}
        self._schemas: list[Generator[TestWarehouse, None, None]] = []

    def get(
        self, request: pytest.FixtureRequest, kind: str, dataset: str, files: list[Path]
    ) -> Loaded:
        key = (kind, dataset)
        if key in self.failed:  # each case of a dataset would load it again, and fail again
            raise AssertionError(f"loading {dataset} into {kind} failed") from self.failed[key]
        if key not in self.loaded:
            try:
                wh = self._new(request, kind, dataset)
                wh.migrate()
                etl("load-file", *map(str, files), wh=wh, check=True, timeout=300)
                self.loaded[key] = self._read(wh, dataset, files)
            except Exception as exc:
                self.failed[key] = exc
                raise
        return self.loaded[key]

    def _new(self, request: pytest.FixtureRequest, kind: str, dataset: str) -> TestWarehouse:
        if kind == "sqlite":
            return TestWarehouse("sqlite", f"sqlite:///{self.base / f'{dataset}.db'}", None)
        pg_server: str = request.getfixturevalue("pg_server")
        # conftest's throwaway schema, held open for the module: closing it drops the schema.
        schema = _pg_schema(pg_server)
        self._schemas.append(schema)
        return next(schema)

    def _expected(self, dataset: str, files: list[Path]) -> Expected:
        if dataset not in self.expected:
            self.expected[dataset] = Expected.of(files)
        return self.expected[dataset]

    def _read(self, wh: TestWarehouse, dataset: str, files: list[Path]) -> Loaded:
        tables = read_tables(wh)
        rebuilt: dict[int, Any] = {}
        for row in tables.conversations:
            try:
                rebuilt[row["id"]] = prune(rebuild_conversation(tables, row))
            except RebuildError as exc:
                rebuilt[row["id"]] = exc
        counts = {row["id"]: row["message_count"] for row in tables.conversations}
        return Loaded(self._expected(dataset, files), rebuilt, counts)

    def close(self) -> None:
        for schema in self._schemas:
            schema.close()


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouses]:
    cache = Warehouses(tmp_path_factory.mktemp("roundtrip"))
    yield cache
    cache.close()


# --- the simulator's export ------------------------------------------------------------------

# 10 days of 520 conversations in environment "live": ~5,070 exported (silent ones have no
# end-user interaction). The simulator's default mix has every message type it knows (question,
# answer, the undocumented "event"), every content type (text, image, video, json, link, ssml,
# the undocumented "carousel"), human-agent chats, intents without a title, and unknown keys
# (x_channel on conversations, x_client on questions, x_version on actions).
SIM_OPTIONS = (
    *("--seed", "11", "--start", "2024-03-27", "--days", "10", "--per-day", "520"),
    *("--environments", "live", "--zone", "Europe/Oslo"),
)
# Earlier exports (server clock at a busy hour: conversations in progress are cut short), then
# the whole dataset: loaded in this order, each conversation ends as its latest copy.
SIM_EARLY_NOWS = ("2024-03-29T13:10:00", "2024-04-02T13:10:00", "2024-04-05T13:10:00")
SIM_FINAL_NOW = "2024-04-20T00:00:00"


def _masked(cid: int) -> bool:
    """A quarter of the conversations are re-exported masked (the vendor's end-user text mask)."""
    return cid % 4 == 1


def _sampled(cid: int) -> bool:
    """Unchanged conversations also in an early export (skipped, or replaced by a masked copy)."""
    return cid % 25 == 1


def _write_export(
    path: Path, elements: list[Any], conversations: list[Any], *, ascii_only: bool = False
) -> None:
    """An export body: `elements`' query_info and post_query_info around `conversations`."""
    query_info, post_query_info = dict(elements[0]), dict(elements[-1])
    query_info["conversations"] = post_query_info["conversations"] = len(conversations)
    body = [query_info, *conversations, post_query_info]
    if ascii_only:  # every non-ASCII character escaped, surrogate pairs and lone surrogates too
        path.write_text(json.dumps(body, ensure_ascii=True), encoding="ascii")
    else:  # as the API sends it: compact, UTF-8
        path.write_bytes(orjson.dumps(body))


@dataclass
class SimulatorExport:
    files: list[Path]  # in load order
    conversations: int
    grown: int  # conversations loaded first with fewer messages than their final copy
    masked: int  # conversations whose final copy is masked
    message_types: Counter[Any]
    content_types: Counter[Any]
    keys: set[str]  # keys of conversations, messages and action references
    untitled_intents: int


def _shape(final: list[dict[str, Any]]) -> tuple[Counter[Any], Counter[Any], set[str], int]:
    message_types: Counter[Any] = Counter()
    content_types: Counter[Any] = Counter()
    keys: set[str] = set()
    untitled = 0
    for conv in final:
        keys.update(conv.keys())
        for msg in conv["messages"]:
            message_types[msg["type"]] += 1
            keys.update(msg.keys())
            for item in msg.get("content") or ():
                content_types[item["type"]] += 1
            for ref in (msg.get("intents") or {}).values():
                untitled += "title" not in ref
            for ref in (msg.get("actions") or {}).values():
                keys.update(ref.keys())
    return message_types, content_types, keys, untitled


@pytest.fixture(scope="session")
def simulator_export(tmp_path_factory: pytest.TempPathFactory) -> SimulatorExport:
    """`etl fake-api --save` at several server clocks, rewritten into the files to load.

    The early exports keep the conversations whose copy is shorter than the final one, and a
    sample of the others (unchanged: skipped by the loader; or masked later: replaced). In the
    final export a quarter of the conversations are masked with the simulator's own mask
    (`etl.fakeapi.dataset.mask_conversation`, what its API sends for only_masked), as
    `--save` has no option for it.
    """
    from etl.fakeapi.dataset import mask_conversation

    base = tmp_path_factory.mktemp("simulator")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "FAKE_API_"))}
    nows = (*SIM_EARLY_NOWS, SIM_FINAL_NOW)
    saves = [base / f"saved-{i}.json" for i in range(len(nows))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "etl", "fake-api", *SIM_OPTIONS, "--now", now, "--save", str(p)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for now, p in zip(nows, saves, strict=True)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()

    final = orjson.loads(saves[-1].read_bytes())
    complete = {c["id"]: c for c in final[1:-1]}
    files, grown = [], set()
    for i, saved in enumerate(saves[:-1]):
        early = orjson.loads(saved.read_bytes())
        kept = []
        for conv in early[1:-1]:
            if len(conv["messages"]) < len(complete[conv["id"]]["messages"]):
                grown.add(conv["id"])
            if conv != complete[conv["id"]] or _sampled(conv["id"]):
                kept.append(conv)
        files.append(base / f"early-{i}.json")
        _write_export(files[-1], early, kept)
    masked = 0
    for conv in complete.values():
        if _masked(conv["id"]):
            mask_conversation(conv)
            masked += 1
    files.append(base / "final.json")
    _write_export(files[-1], final, list(complete.values()))
    for saved in saves:
        saved.unlink()
    return SimulatorExport(files, len(complete), len(grown), masked, *_shape(final[1:-1]))


# --- hand-written conversations, one per case ------------------------------------------------

NUL = "\x00"


def _deep(levels: int) -> Any:
    """Lists nested `levels` deep, with an empty list and a null here and there."""
    value: Any = "bottom"
    for level in range(levels):
        value = [value, [], {"n": None}] if level % 7 == 0 else [value]
    return value


DEEP = _deep(60)


class Case:
    """Builds one conversation: ids unique across the whole file."""

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.next_mid = cid * 100

    def t(self, minute: int, offset: str = "+02:00") -> str:
        return f"2024-05-01T10:{minute:02d}:{minute:02d}.{minute * 1111:06d}{offset}"

    def mid(self) -> int:
        self.next_mid += 1
        return self.next_mid

    def question(self, minute: int, **fields: Any) -> dict[str, Any]:
        question = {
            "type": "question_analysis",
            "input": f"question {minute}",
            "predicted_language": "en-US",
            "sentiment": "neutral",
            "labels": ["Perfect Match"],
            "analysis": [],
            "important_words": ["question"],
        }
        given = fields.pop("question", {})
        return {
            "id": self.mid(),
            "time": self.t(minute),
            "is_human_chat": False,
            "type": "question",
            "session_id": "s-1",
            "question": {**question, **given} if isinstance(given, dict) else given,
            "source_url": "https://www.example.com/",
            "device": "desktop",
            **fields,
        }

    def answer(self, minute: int, **fields: Any) -> dict[str, Any]:
        msg = {
            "id": self.mid(),
            "time": self.t(minute),
            "is_human_chat": False,
            "type": "answer",
            "session_id": "s-1",
            "content": [
                {"type": "text", "text": f"<p>answer {minute}</p>", "time": self.t(minute)}
            ],
        }
        msg.update(fields)
        return msg

    def conversation(self, messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return {
            "type": "conversation",
            "id": self.cid,
            "reference": f"{self.cid:032x}",
            "environment": "live",
            "time": {"created": self.t(0), "last_message_created": self.t(len(messages))},
            "reviewed": False,
            "quality_label": "good",
            "messages": messages,
            **fields,
        }


def _intent(iid: Any, title: Any = None, inherit_skill: Any = None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "intent", "id": iid}
    if title is not None:
        out["title"] = title
    if inherit_skill is not None:
        out["inherit_skill"] = inherit_skill
    return {**out, **more}


def _action(aid: Any, **more: Any) -> dict[str, Any]:
    return {
        "type": "action",
        "action_type": "content",
        "id": aid,
        "language": "en-US",
        "transfer_to_human": False,
        **more,
    }


def _button(bid: Any, **more: Any) -> dict[str, Any]:
    return {"type": "button", "id": bid, "button_type": "action", "text": f"Button {bid}", **more}


def case_intent_inherit_skill_flips(c: Case) -> dict[str, Any]:
    return c.conversation(
        [
            c.question(1, intents={"predicted": _intent(2001, "Opening hours", True)}),
            c.answer(2, intents={"came_from": _intent(2001, "Opening hours", True)}),
            c.question(3, intents={"predicted": _intent(2001, "Opening hours", False)}),
            c.answer(4, intents={"came_from": _intent(2001, "Opening hours", False)}),
        ]
    )


def case_intent_unknown_key_varies(c: Case) -> dict[str, Any]:
    return c.conversation(
        [
            c.question(1, intents={"predicted": _intent(2002, "Refund", False, confidence=0.91)}),
            c.question(2, intents={"predicted": _intent(2002, "Refund", False, confidence=0.42)}),
            c.answer(3, intents={"came_from": _intent(2002, "Refund", False, confidence=0.42)}),
        ]
    )


def case_action_title_varies(c: Case) -> dict[str, Any]:
    return c.conversation(
        [
            c.answer(1, actions={"displayed": _action(3001, title="Welcome v1")}),
            c.answer(
                2,
                actions={
                    "came_from": _action(3001, title="Welcome v1"),
                    "displayed": _action(3001, title="Welcome v2"),
                },
            ),
        ]
    )


def case_intent_without_title_later(c: Case) -> dict[str, Any]:
    return c.conversation(
        [
            c.question(1, intents={"predicted": _intent(2003, "Delivery", True)}),
            c.answer(2, intents={"came_from": _intent(2003, inherit_skill=True)}),
            c.question(3, intents={"predicted": _intent(2003, inherit_skill=False)}),
        ]
    )


def case_analysis_intent_unknown_key(c: Case) -> dict[str, Any]:
    analysis = [
        {
            "processed": "billing",
            "translated": "billing",
            "winner": True,
            "intent": _intent(2004, "Billing", True, score=0.77, source={"model": "v3"}),
        },
        {"processed": "b", "winner": False, "intent": {"type": "custom", "id": 2005}},
        {"processed": "c", "intent": _intent(None, "No id here", False, score=1)},
        {"processed": "d", "intent": "not an object", "x_sentence": [1, 2]},
    ]
    return c.conversation([c.question(1, question={"analysis": analysis})])


def case_unknown_keys_everywhere(c: Case) -> dict[str, Any]:
    question = c.question(
        1,
        question={
            "x_q": {"a": 1},
            "_q": "underscore in a sub-object",
            "analysis": [{"processed": "p", "winner": True, "x_a": 1, "_a": 2}],
        },
        intents={
            "predicted": _intent(2010, "Hello", True, x_i=True),
            "x_other_ref": _intent(2011, "Not a documented reference"),
        },
        x_client={"sdk": "web", "flags": ["beta", None]},
        _m="underscore message key",
        _value="a source key named like the reserved one",
    )
    link = {
        "type": "link",
        "time": c.t(2),
        "buttons": [_button(11, x_color="red", _b=1, _original="source's own")],
        "x_layout": "row",
        "_c": True,
    }
    answer = c.answer(
        2,
        content=[{"type": "text", "text": "hi", "time": c.t(2), "x_style": "bold"}, link],
        actions={"displayed": _action(3010, x_version=2), "x_next": {"id": 3011}},
        button_clicked={
            **_button(11, hidden=False, source_url="https://x.test/"),
            "attributes": {"a": 1},
            "x_pos": 3,
        },
        x_answer=[1, {"b": None}],
    )
    conv = c.conversation(
        [question, answer],
        x_channel={"name": "web", "meta": {"ab": ["B", 2]}},
        _private=1,
        _original="not the warehouse's",
        _value=[1],
        __dunder=True,
        **{"": "empty key", "a.b": "dotted", "_": "lone underscore"},
    )
    conv["time"]["timezone"] = "Europe/Oslo"
    conv["time"]["_t"] = 1
    return conv


def case_unknown_message_type(c: Case) -> dict[str, Any]:
    survey = {
        "id": c.mid(),
        "time": c.t(2),
        "type": "survey",
        "is_human_chat": False,
        "session_id": "s-1",
        "question": {
            "type": "question_analysis",
            "input": "Rate us",
            "analysis": [{"winner": True}],
        },
        "content": [{"type": "text", "text": "t", "time": "2024-05-01T10:00:00+02:00"}],
        "intents": {"predicted": _intent(2020, "Kept verbatim", True)},
        "button_clicked": _button(5),
        "score": 5,
        "_x": 1,
    }
    untyped = {"id": c.mid(), "time": c.t(3), "content": [{"type": "text", "text": "no type"}]}
    numeric = {"id": c.mid(), "time": c.t(4), "type": 7, "device": "desktop"}
    event = {"id": c.mid(), "time": c.t(5), "type": "event", "event": {"name": "feedback"}}
    return c.conversation([c.question(1), survey, untyped, numeric, event])


def case_unknown_content_type(c: Case) -> dict[str, Any]:
    carousel = {
        "type": "carousel",
        "time": c.t(1),
        "cards": [{"title": "Card", "buttons": [_button(1)]}],
        "buttons": [_button(2, text="kept verbatim")],
        "text": "text of an unknown type",
        "_c": 1,
    }
    untyped = {"time": c.t(1), "text": "no type"}
    numeric = {"type": 5, "time": c.t(1), "url": "https://x.test/"}
    return c.conversation([c.answer(1, content=[carousel, untyped, numeric])])


def case_values_of_the_wrong_type(c: Case) -> dict[str, Any]:
    question = c.question(
        1,
        is_human_chat="no",
        session_id=12345,
        device={"kind": "desktop"},
        question={
            "input": 42,
            "sentiment": True,
            "analysis": [{"processed": 1, "winner": "true", "intent": {"id": True, "title": 5}}],
        },
        intents={"predicted": _intent(2030.0, 7, "true")},
    )
    answer = c.answer(
        2,
        actions={
            "displayed": _action(3.5, action_type=True, language=1, transfer_to_human="false"),
            "came_from": _action("3002"),
        },
        intents={"came_from": _intent(-1.5, "Negative float id", 0)},
        content=[
            {"type": "video", "time": c.t(2), "url": 5, "video_fullscreen": "yes"},
            {"type": "text", "time": c.t(2), "text": ["a", "list"]},
            {
                "type": "link",
                "time": c.t(2),
                "buttons": [_button("12", hidden="false", attributes="a string")],
            },
        ],
        button_clicked=_button(12.0, hidden=1, url=False),
        system_action_trigger=["welcome"],
    )
    return c.conversation(
        [question, answer],
        reviewed="yes",
        environment=5,
        quality_label=["good"],
        authentication_identifier=False,
    )


def case_list_items_not_objects(c: Case) -> dict[str, Any]:
    link = {"type": "link", "time": c.t(1), "buttons": ["x", 5, None, [1], _button(13)]}
    return c.conversation(
        [
            c.answer(1, content=["plain string", 42, None, ["nested", {"a": 1}], True, link]),
            c.question(2, question={"analysis": ["y", 3.5, None, {"processed": "ok"}]}),
            c.answer(3, content="not a list"),
            c.question(4, question="not an object", intents=["a list"]),
            c.answer(5, actions={"displayed": "a string"}, button_clicked="a string"),
            c.answer(6, content=[{"type": "link", "time": c.t(6), "buttons": {"not": "a list"}}]),
            c.question(7, question={"analysis": {"not": "a list"}}),
        ],
        time="not an object",
    )


def case_nul_characters(c: Case) -> dict[str, Any]:
    question = c.question(
        1,
        question={
            "input": f"in{NUL}put",
            "labels": [f"la{NUL}bel"],
            "analysis": [{"processed": f"p{NUL}", "intent": _intent(2040, f"A{NUL}")}],
        },
        intents={"predicted": _intent(2040, f"T{NUL}itle", True, **{f"k{NUL}": f"v{NUL}"})},
        **{f"x{NUL}key": f"value{NUL}"},
    )
    answer = c.answer(
        2,
        content=[
            {"type": "text", "time": c.t(2), "text": NUL, "note": f"n{NUL}"},
            {"type": "link", "time": c.t(2), "buttons": [_button(14, text=f"b{NUL}")]},
            f"item{NUL}",
        ],
        _original=f"source's own{NUL}",
    )
    return c.conversation(
        [question, answer],
        reference=f"ab{NUL}c",
        user_information={f"k{NUL}": [f"v{NUL}", {"deep": NUL}]},
        **{f"x{NUL}": f"y{NUL}"},
    )


def case_lone_surrogates(c: Case) -> dict[str, Any]:
    lone = ["\ud800", "\udfff", "a\ud800\ud800b", "\udc00\ud800", "end\ud83d"]
    question = c.question(
        1,
        question={"input": lone[0], "important_words": lone},
        intents={"predicted": _intent(2050, lone[2], True, **{"k\udc00": lone[3]})},
    )
    answer = c.answer(
        2,
        content=[
            {"type": "text", "time": c.t(2), "text": lone[4], "note": lone[1]},
            {"type": "json", "time": c.t(2), "json": {lone[0]: lone}},
            lone[3],
        ],
        **{"x\ud800": "\udfff"},
    )
    return c.conversation(
        [question, answer],
        reference="\\ud800 is not a surrogate here: an escaped backslash",
        quality_label="pair \ud83d\ude00 and lone \ud83d",
        user_information={"s": lone},
    )


def case_nested_json_values(c: Case) -> dict[str, Any]:
    user_information = {
        "name": "Åse Ødegård 😀 日本語 مرحبا \u2028\u2029 \U0010ffff",
        "tags": ["vip", "🎉", ""],
        "deep": DEEP,
        "numbers": [0, -1, 0.1, 1.5e-10, 123.456, -2.5, 1e15, 9007199254740993],
        "int64": [9223372036854775807, -9223372036854775808],
        "empty": {},
        "nulls": [None, 1, {"x": None}],
        "bools": [True, False, 1, 0],
    }
    answer = c.answer(
        1,
        content=[
            {"type": "json", "time": c.t(1), "json": {"payload": {"deep": DEEP, "n": 1.0}}},
            {
                "type": "link",
                "time": c.t(1),
                "buttons": [_button(15, attributes={"k": [[["deep"]]], "u": "ﬁ\u200d\ufeff"})],
            },
        ],
        human_agent={"name": "Kari", "avatar": None, "skills": [["a"], ["b", ["c"]]]},
        matched_filter={"id": 3, "values": ["private", "norway"]},
        sent_filter_values=["private", {"k": "v"}],
    )
    return c.conversation([answer], user_information=user_information)


def case_big_floats(c: Case) -> dict[str, Any]:
    floats = [1.7976931348623157e308, 1e308, 1e16, 1.5e22, 2.5e20, 5e-324]
    answer = c.answer(
        1,
        content=[
            {"type": "json", "time": c.t(1), "json": {"big": floats}},
            {"type": "link", "time": c.t(1), "buttons": [_button(16, attributes={"x": 2.5e20})]},
        ],
    )
    return c.conversation([answer], user_information={"max": floats[0], "all": floats})


def case_negative_zero(c: Case) -> dict[str, Any]:
    answer = c.answer(
        1,
        content=[
            {"type": "json", "time": c.t(1), "json": {"z": -0.0}},
            {"type": "link", "time": c.t(1), "buttons": [_button(17, attributes={"z": -0.0})]},
        ],
    )
    return c.conversation([answer], user_information={"z": -0.0, "list": [-0.0, 0.0, 0]})


def case_big_integers(c: Case) -> dict[str, Any]:
    """Integers beyond 64 bits: in JSON values, and as misfit ids (kept in extra)."""
    big = 123456789012345678901234567890
    return c.conversation(
        [
            c.question(1, intents={"predicted": _intent(2**64, "Beyond bigint", True)}),
            c.answer(
                2,
                content=[{"type": "json", "time": c.t(2), "json": {"n": big, "neg": -big}}],
                actions={"displayed": _action(-(2**63) - 1)},
            ),
        ],
        user_information={"n": big},
        x_big=10**30,
    )


def case_json_column_numbers(c: Case) -> dict[str, Any]:
    """JSON columns whose whole value is a number (JSON allows any value there)."""
    answer = c.answer(
        1,
        content=[
            {"type": "json", "time": c.t(1), "json": 42},
            {"type": "json", "time": c.t(1), "json": 1.5},
            {"type": "json", "time": c.t(1), "json": 9223372036854775807},
            {"type": "json", "time": c.t(1), "json": -9223372036854775808},
            {"type": "json", "time": c.t(1), "json": 1e-7},
            {"type": "link", "time": c.t(1), "buttons": [_button(18, attributes=12)]},
        ],
        human_agent=7,
        matched_filter=-3,
        sent_filter_values=0.25,
    )
    return c.conversation([answer], user_information=5)


def case_json_column_integral_floats(c: Case) -> dict[str, Any]:
    """JSON columns whose whole value is a float with an integral value."""
    answer = c.answer(
        1,
        content=[{"type": "json", "time": c.t(1), "json": 1.0}],
        human_agent=300000.0,
    )
    return c.conversation([answer], user_information=-2.0)


def case_json_column_negative_zero(c: Case) -> dict[str, Any]:
    """JSON columns whose whole value is -0.0."""
    answer = c.answer(1, content=[{"type": "json", "time": c.t(1), "json": -0.0}])
    return c.conversation([answer], user_information=-0.0)


def case_json_column_big_floats(c: Case) -> dict[str, Any]:
    """JSON columns whose whole value is a float of 1e16 or more."""
    answer = c.answer(
        1,
        content=[
            {"type": "json", "time": c.t(1), "json": 1e16},
            {"type": "json", "time": c.t(1), "json": 1e308},
        ],
    )
    return c.conversation([answer], user_information=2.5e20)


def case_json_column_big_integer(c: Case) -> dict[str, Any]:
    """JSON columns whose whole value is an integer beyond 64 bits.

    On SQLite the value is lost (the column's NUMERIC affinity stores it as a REAL, rounded to
    a double): a product loss, left failing on purpose.
    """
    answer = c.answer(
        1, content=[{"type": "json", "time": c.t(1), "json": 123456789012345678901234567890}]
    )
    return c.conversation([answer], user_information=2**64 + 1)


def case_json_column_strings_and_bools(c: Case) -> dict[str, Any]:
    """JSON columns whose whole value is a string (some look like numbers) or a boolean."""
    answer = c.answer(
        1,
        content=[
            {"type": "json", "time": c.t(1), "json": "text"},
            {"type": "json", "time": c.t(1), "json": "42"},
            {"type": "json", "time": c.t(1), "json": "-0.0"},
            {"type": "json", "time": c.t(1), "json": True},
            {"type": "json", "time": c.t(1), "json": False},
            {"type": "link", "time": c.t(1), "buttons": [_button(19, attributes="attr")]},
        ],
        human_agent="Kari",
        matched_filter=True,
    )
    question = c.question(2, question={"labels": "one label", "important_words": "1.5"})
    return c.conversation([answer, question], user_information="just a string")


def case_time_zones(c: Case) -> dict[str, Any]:
    """Offsets of all kinds, "Z", more than six fractional digits, no fraction at all."""
    question = c.question(1)
    question["time"] = "2024-05-01T10:01:00.123456789+05:45"
    answer = c.answer(2)
    answer["time"] = "2024-05-01T00:30:00Z"
    answer["content"][0]["time"] = "2024-04-30T23:59:59.999999-09:30"
    conv = c.conversation([question, answer])
    conv["time"] = {"created": "2024-05-01T01:00:00+14:00", "last_message_created": answer["time"]}
    return conv


CASES: dict[str, Callable[[Case], dict[str, Any]]] = {
    name.removeprefix("case_"): builder
    for name, builder in sorted(globals().items())
    if name.startswith("case_")
}
# Cases whose values make `etl load-file` re-read the whole file with the exact (pure-Python)
# parser (lone surrogates, integers beyond 64 bits): in a file of their own, so the other cases
# go through the fast parsers.
EXACT_PARSE = ("lone_surrogates", "big_integers", "json_column_big_integer")
CASE_IDS = {name: 9_000_001 + i for i, name in enumerate(CASES)}

# PostgreSQL's jsonb keeps numbers as `numeric`, which has no negative zero and is written back
# without an exponent: the number is equal, its JSON form (float or integer, sign of zero) is
# not (docs/schema.md lists it). SQLite keeps the JSON text (its JSON columns are TEXT, 0003).
_JSONB_NUMERIC = "jsonb stores numbers as numeric: "
# (case, database) -> why a value cannot round-trip there: xfail(strict=True).
KNOWN_GAPS: dict[tuple[str, str], str] = {
    ("big_floats", "postgres"): _JSONB_NUMERIC
    + "1.7976931348623157e+308, 1e+308, 1e+16, 1.5e+22, 2.5e+20 come back as integers "
    "(179769313486231570000…, 10000000000000000, …): no decimal point in numeric's text",
    ("negative_zero", "postgres"): _JSONB_NUMERIC + "-0.0 comes back as 0.0",
    ("json_column_negative_zero", "postgres"): _JSONB_NUMERIC + "-0.0 comes back as 0.0",
    ("json_column_big_floats", "postgres"): _JSONB_NUMERIC
    + "1e+16, 1e+308 and 2.5e+20 come back as integers",
}


def _case_params() -> list[Any]:
    params = []
    for name in CASES:
        for kind in ("sqlite", "postgres"):
            marks = [pytest.mark.postgres] if kind == "postgres" else []
            if (name, kind) in KNOWN_GAPS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name, kind]))
            params.append(pytest.param(name, kind, marks=marks, id=f"{name}-{kind}"))
    return params


@pytest.fixture(scope="module")
def handwritten_export(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("handwritten")
    seed = json.loads(SEED_EXPORT.read_text())
    seed[0]["current_time"] = "2024-05-02T00:00:00.000000+02:00"
    fast = [CASES[n](Case(CASE_IDS[n])) for n in CASES if n not in EXACT_PARSE]
    exact = [CASES[n](Case(CASE_IDS[n])) for n in EXACT_PARSE]
    files = [base / "handwritten.json", base / "handwritten-exact.json"]
    _write_export(files[0], seed, fast)
    # Lone surrogates can only be written escaped (ASCII JSON); so are the other non-ASCII
    # characters of this file, as surrogate pairs ("\ud83d\ude00") among the lone ones.
    _write_export(files[1], seed, exact, ascii_only=True)
    return files


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_seed_example_roundtrips(
    kind: str, request: pytest.FixtureRequest, warehouses: Warehouses
) -> None:
    assert_roundtrip(warehouses.get(request, kind, "seed", [SEED_EXPORT]))


@pytest.mark.parametrize("kind", KINDS)
def test_simulator_export_roundtrips(
    kind: str,
    request: pytest.FixtureRequest,
    warehouses: Warehouses,
    simulator_export: SimulatorExport,
) -> None:
    loaded = warehouses.get(request, kind, "simulator", simulator_export.files)
    assert len(loaded.expected.texts) == simulator_export.conversations >= 5000
    assert_roundtrip(loaded)


def test_simulator_export_has_every_shape(simulator_export: SimulatorExport) -> None:
    """What the simulator dataset must contain for its round trip to prove anything."""
    sim = simulator_export
    assert set(sim.message_types) == {"question", "answer", "event"}
    assert set(sim.content_types) == {*KNOWN_CONTENT_TYPES, "carousel"}
    assert {"x_channel", "x_client", "x_version", "human_agent", "button_clicked"} <= sim.keys
    assert sim.untitled_intents > 0
    assert sim.grown >= 20, "re-exports with more messages than the copy loaded before"
    assert sim.masked > 1000


@pytest.mark.parametrize(("case", "kind"), _case_params())
def test_handwritten_case_roundtrips(
    case: str,
    kind: str,
    request: pytest.FixtureRequest,
    warehouses: Warehouses,
    handwritten_export: list[Path],
) -> None:
    loaded = warehouses.get(request, kind, "handwritten", handwritten_export)
    assert CASE_IDS[case] in loaded.rebuilt, f"conversation of case {case} was not loaded"
    assert_roundtrip(loaded, [CASE_IDS[case]])


@pytest.mark.parametrize("kind", KINDS)
def test_handwritten_export_loads_exactly_its_conversations(
    kind: str,
    request: pytest.FixtureRequest,
    warehouses: Warehouses,
    handwritten_export: list[Path],
) -> None:
    loaded = warehouses.get(request, kind, "handwritten", handwritten_export)
    assert sorted(loaded.rebuilt) == sorted(CASE_IDS.values())
