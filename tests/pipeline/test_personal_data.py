"""Personal data on both warehouses: erasure that sticks (`etl forget`), retention (`etl
prune`), and deletions detected at the source (`pipeline.deletes`, `--detect-deletes`)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from etl.fakeapi import Dataset, DatasetSpec, Faults
from etl.windows import parse_instant, parse_zone, plan_windows
from tests.conftest import TestWarehouse, dump_tables
from tests.pipeline.cli_helpers import etl, write_config

OSLO = parse_zone("Europe/Oslo")
SEED = Path(__file__).parents[1] / "fixtures" / "seed-example-export.json"
START, UNTIL = "2024-03-28", "2024-04-02"


def _config(tmp_path: Path, **pipeline: Any) -> Path:
    settings = {"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"}
    settings.update(pipeline)
    return write_config(tmp_path, pipeline=settings)


def _query(wh: TestWarehouse, sql: str) -> list[tuple[Any, ...]]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _execute(wh: TestWarehouse, sql: str) -> None:
    engine = wh.engine()
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _ids(wh: TestWarehouse, where: str = "1 = 1") -> list[int]:
    return [r[0] for r in _query(wh, f"SELECT id FROM {wh.table('conversations')} WHERE {where}")]


def _backfill(wh: TestWarehouse, api: Any, config: Path, *extra: str) -> Any:
    return etl("backfill", "--from", START, "--to", UNTIL, *extra, wh=wh, api=api, config=config)


def _children(wh: TestWarehouse, ids: list[int]) -> int:
    listed = ", ".join(map(str, ids))
    return sum(
        _query(wh, f"SELECT count(*) FROM {wh.table(t)} WHERE conversation_id IN ({listed})")[0][0]
        for t in ("messages", "content", "buttons", "intent_analysis")
    )


def _last_run(wh: TestWarehouse, command: str) -> dict[str, Any]:
    rows = _query(
        wh,
        "SELECT outcome, conversations_forgotten, conversations_deleted, conversations_pruned "
        f"FROM {wh.table('etl_runs')} WHERE command = '{command}' ORDER BY id DESC",
    )
    outcome, forgotten, deleted, pruned = rows[0]
    return {"outcome": outcome, "forgotten": forgotten, "deleted": deleted, "pruned": pruned}


# -- etl forget ---------------------------------------------------------------------------------


def test_forgotten_conversations_stay_gone_after_a_backfill(
    warehouse: TestWarehouse, make_sim: Any, sim_dataset: Any, tmp_path: Path
) -> None:
    api, config = make_sim(), _config(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    assert _backfill(warehouse, api, config).code == 0
    stored = sorted(_ids(warehouse))
    by_id = stored[:2]
    person = next(
        c["authentication_identifier"]
        for c in map(sim_dataset.conversation, stored[2:])
        if c.get("authentication_identifier")
    )
    theirs = sorted(
        cid
        for cid in stored
        if sim_dataset.conversation(cid).get("authentication_identifier") == person
    )
    reference = sim_dataset.conversation(stored[-1])["reference"]
    erased = sorted({*by_id, *theirs, stored[-1]})
    assert _children(warehouse, erased) > 0
    before = dump_tables(warehouse)

    # The request from a file, as an erasure desk would keep it out of command lines.
    request = tmp_path / "request.txt"
    request.write_text(
        "".join(f"conversation-id:{i}\n" for i in by_id)
        + f"authentication-identifier:{person}\n\nreference:{reference}\n"
    )
    dry = etl(
        "forget", f"--from-file={request}", "--dry-run", wh=warehouse, config=config, check=True
    )
    assert f"would erase {len(erased)} conversation(s)" in dry.stderr
    assert person not in dry.output  # the request's personal data is not echoed
    assert dump_tables(warehouse) == before

    done = etl(
        "forget",
        *(f"--conversation-id={i}" for i in by_id),
        f"--authentication-identifier={person}",
        f"--reference={reference}",
        wh=warehouse,
        config=config,
        check=True,
    )
    assert f"erased {len(erased)} conversation(s)" in done.stderr
    assert sorted(set(stored) - set(_ids(warehouse))) == erased
    assert _children(warehouse, erased) == 0
    tombstones = _query(warehouse, f"SELECT * FROM {warehouse.table('etl_tombstones')}")
    assert sorted(r[0] for r in tombstones) == erased
    assert all(len(r) == 3 for r in tombstones)  # id, time, run: no personal data
    assert _last_run(warehouse, "forget")["forgotten"] == len(erased)

    # The same range again: they stay gone, counted as forgotten.
    assert _backfill(warehouse, api, config).code == 0
    assert sorted(set(stored) - set(_ids(warehouse))) == erased
    forgotten = _query(
        warehouse,
        f"SELECT sum(conversations_forgotten) FROM {warehouse.table('etl_runs')} "
        "WHERE command = 'backfill' AND outcome = 'ok'",
    )[0][0]
    assert forgotten >= len(erased)  # a conversation may come with two windows
    status = json.loads(etl("status", "--json", wh=warehouse, config=config, check=True).stdout)
    assert status["totals"]["conversation_outcomes"]["forgotten"] == forgotten
    assert status["personal_data"] == {"forgotten": len(erased), "deleted": 0, "pruned": 0}


def test_forget_empties_the_quarantine_of_the_conversation(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """A quarantined copy holds the whole text: erased with the rest, and not quarantined by
    a later load either."""
    seed = json.loads(SEED.read_text())
    conversation = seed[1]
    conversation["messages"][0]["id"] = "not an id"  # cannot be loaded: quarantined
    # The same person's conversation whose own id cannot be read (quarantined without one),
    # and another's whose reference is not even a string.
    unreadable = {**json.loads(json.dumps(conversation)), "id": "x-1"}
    odd = {**json.loads(json.dumps(conversation)), "id": 77, "reference": ["a", "list"]}
    seed[1:2] = [conversation, unreadable, odd]
    seed[0]["conversations"] = seed[-1]["conversations"] = 3
    export = tmp_path / "bad.json"
    export.write_text(json.dumps(seed))
    etl("migrate", wh=warehouse, check=True)
    etl("load-file", "--on-bad-conversation=quarantine", str(export), wh=warehouse, check=True)
    rejects = warehouse.table("etl_rejects")
    ids = f"SELECT conversation_id FROM {rejects}"
    assert sorted(_query(warehouse, ids), key=str) == sorted(
        [(conversation["id"],), (None,), (77,)], key=str
    )

    dry = etl(
        "forget", f"--reference={conversation['reference']}", "--dry-run", wh=warehouse, check=True
    )
    # Only quarantined copies match (one without a readable id): said, not "nothing erased".
    assert "would erase 1 conversation(s) (0 stored; ids 1000001); rows: etl_rejects 2" in (
        dry.stderr
    )
    etl("forget", f"--reference={conversation['reference']}", wh=warehouse, check=True)
    assert _query(warehouse, ids) == [(77,)]  # both copies with the reference, not the other
    loaded = etl(
        "load-file", "--on-bad-conversation=quarantine", str(export), wh=warehouse, check=True
    )
    # Both stay out: the erased id, and the copy without one, by its erased reference.
    assert _query(warehouse, ids) == [(77,)]
    assert "2 forgotten" in loaded.stderr


def test_forget_needs_something_to_erase(warehouse: TestWarehouse, tmp_path: Path) -> None:
    etl("migrate", wh=warehouse, check=True)
    result = etl("forget", wh=warehouse)
    assert result.code == 2 and "--conversation-id" in result.output
    beyond = etl("forget", f"--conversation-id={2**63}", wh=warehouse)
    assert beyond.code == 2 and "--conversation-id" in beyond.output and "bug" not in beyond.output
    empty = etl("forget", "--authentication-identifier=", wh=warehouse)
    assert empty.code == 2 and "names no one" in empty.output
    request = tmp_path / "request.txt"
    for line, says in (
        ("email:kari@example.com", "line 1: write"),
        ("conversation-id:x1", "line 1"),
    ):
        request.write_text(line + "\n")
        bad = etl("forget", f"--from-file={request}", wh=warehouse)
        assert bad.code == 2 and says in bad.output and "kari" not in bad.output


def test_a_person_erased_before_their_conversations_are_loaded_is_never_stored(
    warehouse: TestWarehouse, make_sim: Any, sim_dataset: Any, tmp_path: Path
) -> None:
    """An identifier or reference erased while nothing of it is stored (a backfill of older
    dates comes later, say) keeps its conversations out of every load, quarantine included."""
    api, config = make_sim(), _config(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    window = [sim_dataset.conversation(i) for i in api.matching_ids(*_range())]
    person = next(
        c["authentication_identifier"] for c in window if c.get("authentication_identifier")
    )
    theirs = {c["id"] for c in window if c.get("authentication_identifier") == person}
    by_reference = next(c for c in window if c["id"] not in theirs)

    done = etl(
        "forget",
        f"--authentication-identifier={person}",
        f"--reference={by_reference['reference']}",
        wh=warehouse,
        config=config,
        check=True,
    )
    assert "erased no stored conversation" in done.stderr
    assert "2 reference(s) and identifier(s) are recorded, hashed" in done.stderr
    assert person not in done.output
    recorded = _query(warehouse, f"SELECT kind, digest FROM {warehouse.table('etl_erased_keys')}")
    assert sorted(kind for kind, _ in recorded) == ["authentication_identifier", "reference"]
    assert not any(
        person in digest or by_reference["reference"] in digest for _, digest in recorded
    )
    assert _last_run(warehouse, "forget")["forgotten"] == 0  # logged all the same

    assert _backfill(warehouse, api, config).code == 0
    stored = set(_ids(warehouse))
    assert stored and not stored & {*theirs, by_reference["id"]}
    assert _query(
        warehouse,
        f"SELECT count(*) FROM {warehouse.table('conversations')} "
        f"WHERE authentication_identifier = '{person}'",
    ) == [(0,)]
    forgotten = _query(
        warehouse,
        f"SELECT sum(conversations_forgotten) FROM {warehouse.table('etl_runs')} "
        "WHERE command = 'backfill'",
    )[0][0]
    assert forgotten >= len(theirs) + 1


def _range() -> tuple[datetime, datetime]:
    return parse_instant(START, OSLO), parse_instant(UNTIL, OSLO)


# -- etl prune ----------------------------------------------------------------------------------


def test_prune_removes_exactly_the_conversations_past_the_cut_off(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api, config = make_sim(), _config(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    assert _backfill(warehouse, api, config).code == 0
    # A quarantined copy of a 2021 conversation: retention covers the quarantine too.
    seed = json.loads(SEED.read_text())
    seed[1]["messages"][0]["id"] = "not an id"
    (tmp_path / "old.json").write_text(json.dumps(seed))
    etl(
        "load-file",
        "--on-bad-conversation=quarantine",
        str(tmp_path / "old.json"),
        wh=warehouse,
        config=config,
        check=True,
    )
    last = {
        row[0]: row[1]
        for row in _query(
            warehouse, f"SELECT id, last_message_at FROM {warehouse.table('conversations')}"
        )
    }
    cutoff = "2024-03-30"
    instant = parse_instant(cutoff, OSLO)

    def before(value: Any) -> bool:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) < instant

    old = sorted(i for i, at in last.items() if before(at))
    assert old and len(old) < len(last)

    dry = etl("prune", f"--before={cutoff}", "--dry-run", wh=warehouse, config=config, check=True)
    assert f"would remove {len(old)} conversation(s)" in dry.stderr
    assert len(_ids(warehouse)) == len(last)

    etl("prune", f"--before={cutoff}", wh=warehouse, config=config, check=True)
    assert sorted(_ids(warehouse)) == sorted(set(last) - set(old))
    assert _query(warehouse, f"SELECT count(*) FROM {warehouse.table('etl_rejects')}") == [(0,)]
    assert _children(warehouse, old) == 0
    assert _last_run(warehouse, "prune") == {
        "outcome": "ok",
        "forgotten": None,
        "deleted": None,
        "pruned": len(old),
    }
    # pipeline_daily counts windows (five, and the file), not prunes.
    windows = _query(warehouse, f"SELECT sum(windows) FROM {warehouse.table('pipeline_daily')}")
    assert windows == [(6,)]


def test_a_conversation_exported_without_times_is_pruned_by_its_messages(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """No `time` object: created_at and last_message_at are NULL, and prune never matched it,
    however old its messages."""
    config = _config(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    seed = json.loads(SEED.read_text())
    del seed[1]["time"]
    (tmp_path / "untimed.json").write_text(json.dumps(seed))
    etl("load-file", str(tmp_path / "untimed.json"), wh=warehouse, config=config, check=True)
    assert _query(
        warehouse, f"SELECT created_at, last_message_at FROM {warehouse.table('conversations')}"
    ) == [(None, None)]
    etl("prune", "--before=2021-01-01", wh=warehouse, config=config, check=True)
    assert len(_ids(warehouse)) == 1  # its messages are from January 2021
    etl("prune", "--before=2021-03-01", wh=warehouse, config=config, check=True)
    assert _ids(warehouse) == []
    assert _children(warehouse, [seed[1]["id"]]) == 0


def test_a_conversation_exported_with_only_its_start_is_pruned_by_its_messages(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """`time.created` without `last_message_created`: its messages say when it ended, not its
    start (found in review: one started in 2020 with messages in 2021 was pruned for 2021)."""
    config = _config(tmp_path)
    etl("migrate", wh=warehouse, config=config, check=True)
    seed = json.loads(SEED.read_text())
    seed[1]["time"] = {"created": "2020-06-01T10:00:00+00:00"}
    (tmp_path / "started.json").write_text(json.dumps(seed))
    etl("load-file", str(tmp_path / "started.json"), wh=warehouse, config=config, check=True)
    etl("prune", "--before=2021-01-01", wh=warehouse, config=config, check=True)
    assert len(_ids(warehouse)) == 1  # its messages are from January 2021
    etl("prune", "--before=2021-03-01", wh=warehouse, config=config, check=True)
    assert _ids(warehouse) == []


def test_run_prunes_at_its_end_when_retention_is_set(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    api = make_sim()
    config = write_config(
        tmp_path,
        pipeline={"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"},
        warehouse={"retention": "3650d"},
    )
    etl("migrate", wh=warehouse, config=config, check=True)
    result = etl("run", "--until", UNTIL, wh=warehouse, api=api, config=config, check=True)
    assert "prune: removed 0 conversation(s)" in result.stderr
    assert _ids(warehouse)  # nothing is ten years old: everything stays
    assert _last_run(warehouse, "prune")["pruned"] == 0

    short = write_config(
        tmp_path,
        pipeline={"start": START, "window": "1d", "lag": "2h", "timezone": "Europe/Oslo"},
        warehouse={"retention": "30d"},
    )
    again = etl("run", "--until", UNTIL, wh=warehouse, api=api, config=short, check=True)
    assert "up to date" in again.stderr  # nothing to load, retention all the same
    assert "prune: removed" in again.stderr
    assert _ids(warehouse) == []  # 2024 is more than 30 days ago


# Where each data table's dump (conftest.dump_tables) has the conversation id.
_CONVERSATION_AT = {
    "conversations": 0,
    "messages": 1,
    "content": 2,
    "buttons": 3,
    "intent_analysis": 2,
}


def _others(tables: dict[str, list[tuple[Any, ...]]], gone: list[int]) -> dict[str, Any]:
    """The dumped rows that belong to no conversation of `gone` (dimensions whole)."""
    left = {str(i) for i in gone}
    return {
        name: [
            r for r in rows if name not in _CONVERSATION_AT or r[_CONVERSATION_AT[name]] not in left
        ]
        for name, rows in tables.items()
    }


# -- deletions at the source ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def five_hundred() -> Dataset:
    """About 500 conversations over the range."""
    return Dataset.build(
        DatasetSpec(seed=11, start=date(2024, 3, 27), days=7, per_day=115), "Europe/Oslo"
    )


@pytest.mark.parametrize("policy", ["soft", "hard"])
def test_detect_deletes_marks_or_removes_exactly_what_the_source_deleted(
    warehouse: TestWarehouse, make_sim: Any, five_hundred: Dataset, tmp_path: Path, policy: str
) -> None:
    api = make_sim(dataset=five_hundred)
    config = _config(tmp_path, deletes=policy)
    etl("migrate", wh=warehouse, config=config, check=True)
    assert _backfill(warehouse, api, config).code == 0
    stored = sorted(_ids(warehouse))
    assert 480 <= len(stored) <= 520
    gone = stored[::50][:10]
    assert len(gone) == 10
    # Copies stored before migration 0006 have no state key: a window that returns them
    # records its own, and detection covers them from then on.
    conversations = warehouse.table("conversations")
    _execute(warehouse, f"UPDATE {conversations} SET state_key = NULL")
    assert _backfill(warehouse, api, config).code == 0
    assert _ids(warehouse, "state_key IS NULL") == []
    before = dump_tables(warehouse)

    api.delete(gone)
    # A plain run leaves them alone (nothing to reload), a backfill with detection finds them.
    result = _backfill(warehouse, api, config, "--detect-deletes")
    assert result.code == 0, result.output
    if policy == "soft":
        assert sorted(_ids(warehouse, "deleted_at IS NOT NULL")) == gone
        assert sorted(_ids(warehouse)) == stored
        facts = [
            r[0]
            for r in _query(
                warehouse, f"SELECT conversation_id FROM {warehouse.table('conversation_facts')}"
            )
        ]
        assert sorted(facts) == sorted(set(stored) - set(gone))
    else:
        assert sorted(_ids(warehouse)) == sorted(set(stored) - set(gone))
        assert _children(warehouse, gone) == 0
    deleted = _query(
        warehouse,
        f"SELECT sum(conversations_deleted) FROM {warehouse.table('etl_runs')} "
        "WHERE command = 'backfill' AND outcome = 'ok'",
    )[0][0]
    assert deleted == 10
    # Nothing else changed.
    assert _others(dump_tables(warehouse), gone) == _others(before, gone)

    if policy == "soft":  # the source has them again: they are present again
        api.deleted = frozenset()
        assert _backfill(warehouse, api, config, "--detect-deletes").code == 0
        assert _ids(warehouse, "deleted_at IS NOT NULL") == []


def test_a_window_that_fails_mid_stream_deletes_nothing(
    warehouse: TestWarehouse, make_sim: Any, five_hundred: Dataset, tmp_path: Path
) -> None:
    good = make_sim(dataset=five_hundred)
    config = _config(tmp_path, deletes="hard")
    etl("migrate", wh=warehouse, config=config, check=True)
    assert _backfill(warehouse, good, config).code == 0
    stored = sorted(_ids(warehouse))
    start, until = (parse_instant(d, OSLO).astimezone(UTC) for d in (START, UNTIL))
    windows = list(plan_windows(start, until, timedelta(days=1)))
    failing = windows[2]
    in_failing = set(good.matching_ids(failing.start, failing.end))
    elsewhere = set(stored) - in_failing
    gone = sorted(
        in_failing - {i for w in windows if w != failing for i in good.matching_ids(w.start, w.end)}
    )[:3]
    assert gone, "the failing window has conversations of its own"
    port = good.port
    good.stop()  # the same site (URL) keeps the same state key: reuse the port
    broken = make_sim(
        dataset=five_hundred,
        port=port,
        deleted_ids=frozenset(gone),
        faults=Faults(error_after=5, only_starts=(failing.start.isoformat(),)),
    )
    result = _backfill(warehouse, broken, config, "--detect-deletes")
    assert result.code == 4, result.output
    assert set(gone) <= set(_ids(warehouse))  # their only window failed: still stored
    assert set(_ids(warehouse)) >= elsewhere


def test_an_identifier_with_a_nul_is_erased_by_the_value_the_warehouse_shows(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    """The column holds U+FFFD for the NUL (a command line cannot even carry one): that value
    erases the quarantined copy, whose text keeps the NUL, and keeps it out of later loads."""
    seed = json.loads(SEED.read_text())
    seed[1]["authentication_identifier"] = "user\u0000x@example.com"
    seed[1]["messages"][0]["id"] = "not an id"  # quarantined, with its text as sent
    export = tmp_path / "nul.json"
    export.write_text(json.dumps(seed))
    etl("migrate", wh=warehouse, check=True)
    etl("load-file", "--on-bad-conversation=quarantine", str(export), wh=warehouse, check=True)
    rejects = f"SELECT count(*) FROM {warehouse.table('etl_rejects')}"
    assert _query(warehouse, rejects) == [(1,)]

    shown = "user\ufffdx@example.com"
    etl("forget", f"--authentication-identifier={shown}", wh=warehouse, check=True)
    assert _query(warehouse, rejects) == [(0,)]
    loaded = etl(
        "load-file", "--on-bad-conversation=quarantine", str(export), wh=warehouse, check=True
    )
    assert _query(warehouse, rejects) == [(0,)]
    assert "1 forgotten" in loaded.stderr
