"""pipeline.on_bad_conversation through the real CLI, on SQLite and PostgreSQL: with "fail" a
conversation that cannot be loaded fails its window (nothing committed); with "quarantine" it
goes whole to etl_rejects and the rest of the window commits (issue 14, "What to build" 5, 6).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from etl.errors import ExitCode
from etl.load.schema import build_metadata
from tests.conftest import TestWarehouse
from tests.load.test_loaded_values import seed_elements
from tests.pipeline.cli_helpers import etl

COUNT = 1000
POISONED = 500  # 1-based: the 500th conversation of the stream


def _conversation(cid: int) -> dict[str, Any]:
    """The seed example's conversation, with its own conversation and message ids."""
    _, seed, _ = seed_elements()
    conversation = copy.deepcopy(seed)
    conversation["id"] = cid
    for at, message in enumerate(conversation["messages"]):
        message["id"] = cid * 100 + at
    return conversation


def _write(path: Path, conversations: list[dict[str, Any]]) -> Path:
    query_info, _, post_query_info = seed_elements()
    query_info["conversations"] = len(conversations)
    path.write_text(json.dumps([query_info, *conversations, post_query_info]))
    return path


def _tables(wh: TestWarehouse) -> Any:
    metadata = build_metadata(wh.schema)
    return lambda name: metadata.tables[f"{wh.schema}.{name}" if wh.schema else name]


def _count(wh: TestWarehouse, table: str) -> int:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(_tables(wh)(table))).scalar_one()
            )
    finally:
        engine.dispose()


def _rejects(wh: TestWarehouse) -> list[dict[str, Any]]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            table = _tables(wh)("etl_rejects")
            return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]
    finally:
        engine.dispose()


def _last_run(wh: TestWarehouse) -> dict[str, Any]:
    engine = wh.engine()
    try:
        with engine.connect() as conn:
            runs = _tables(wh)("etl_runs")
            query = select(runs).order_by(runs.c.id.desc()).limit(1)
            return dict(conn.execute(query).mappings().one())
    finally:
        engine.dispose()


def _poisoned_export(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """1,000 conversations, the 500th with a timestamp without a UTC offset."""
    conversations = [_conversation(cid) for cid in range(1, COUNT + 1)]
    poisoned = conversations[POISONED - 1]
    poisoned["messages"][1]["time"] = "2024-03-25T10:00:00"  # naive: refused
    return _write(tmp_path / "export.json", conversations), poisoned


def test_with_fail_nothing_of_the_window_is_committed(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    path, poisoned = _poisoned_export(tmp_path)
    result = etl("load-file", str(path), wh=migrated)
    assert result.code == ExitCode.DATA
    assert f"conversation {poisoned['id']}, field 'messages[1].time'" in result.output
    assert "has no UTC offset" in result.output
    assert 'pipeline.on_bad_conversation = "quarantine"' in result.output
    assert _count(migrated, "conversations") == 0
    assert _rejects(migrated) == []


def test_with_quarantine_the_rest_of_the_window_commits(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    path, poisoned = _poisoned_export(tmp_path)
    result = etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated)
    assert result.code == 0, result.output
    assert "999 new, 0 changed, 0 unchanged, 0 older, 1 rejected" in result.output
    assert _count(migrated, "conversations") == COUNT - 1
    (reject,) = _rejects(migrated)
    assert reject["conversation_id"] == poisoned["id"]
    assert reject["position"] == POISONED - 1
    assert "has no UTC offset" in reject["error"]
    assert json.loads(reject["body"]) == poisoned  # whole, as the file held it
    assert reject["attempts"] == 1
    run = _last_run(migrated)
    assert (run["conversations"], run["conversations_new"], run["conversations_rejected"]) == (
        COUNT,
        COUNT - 1,
        1,
    )

    status = etl("status", wh=migrated, check=True)
    assert "Quarantined conversations (etl_rejects): 1" in status.output
    assert f"conversation {poisoned['id']}" in status.output
    assert (
        json.loads(etl("status", "--json", wh=migrated, check=True).stdout)["rejects"]["count"] == 1
    )

    # It still cannot load: reprocessing keeps it (one more attempt) and changes nothing else.
    again = etl("reprocess-rejects", wh=migrated, check=True)
    assert "1 rejected" in again.output
    (kept,) = _rejects(migrated)
    assert (kept["id"], kept["attempts"], kept["body"]) == (reject["id"], 2, reject["body"])
    assert _count(migrated, "conversations") == COUNT - 1

    # Loading the window again converges: the same reject, not a second one.
    etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated, check=True)
    assert [(r["id"], r["attempts"]) for r in _rejects(migrated)] == [(reject["id"], 3)]
    assert _count(migrated, "conversations") == COUNT - 1


def test_a_message_id_of_another_conversation(migrated: TestWarehouse, tmp_path: Path) -> None:
    owner, claimer = _conversation(1), _conversation(2)
    claimer["messages"][0]["id"] = owner["messages"][0]["id"]
    etl("load-file", str(_write(tmp_path / "owner.json", [owner])), wh=migrated, check=True)
    path = _write(tmp_path / "claimer.json", [_conversation(3), claimer])

    failed = etl("load-file", str(path), wh=migrated)
    assert failed.code == ExitCode.DATA
    assert (
        f"conversation 2: its message id {owner['messages'][0]['id']} already belongs to "
        "conversation 1" in failed.output
    )
    assert _count(migrated, "conversations") == 1

    etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated, check=True)
    assert _count(migrated, "conversations") == 2  # 1 and 3
    (reject,) = _rejects(migrated)
    assert (reject["conversation_id"], reject["position"]) == (2, 1)
    assert json.loads(reject["body"]) == claimer

    # Once the owner is gone (erased by hand here), the claimer loads and leaves the quarantine.
    engine = migrated.engine()
    try:
        with engine.begin() as conn:
            for table in ("messages", "content", "buttons", "intent_analysis"):
                t = _tables(migrated)(table)
                conn.execute(delete(t).where(t.c.conversation_id == 1))
            conversations = _tables(migrated)("conversations")
            conn.execute(delete(conversations).where(conversations.c.id == 1))
    finally:
        engine.dispose()
    result = etl("reprocess-rejects", wh=migrated, check=True)
    assert "1 new" in result.output and "0 rejected" in result.output
    assert _rejects(migrated) == []
    assert _count(migrated, "conversations") == 2  # 2 and 3


def test_an_id_beyond_64_bits(migrated: TestWarehouse, tmp_path: Path) -> None:
    big = _conversation(1)
    big["id"] = 2**63
    path = _write(tmp_path / "big.json", [_conversation(2), big, _conversation(3)])
    failed = etl("load-file", str(path), wh=migrated)
    assert failed.code == ExitCode.DATA
    assert "conversation #2 of the stream" in failed.output
    assert f"conversation id {2**63} is out of range for bigint" in failed.output

    etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated, check=True)
    (reject,) = _rejects(migrated)
    assert reject["conversation_id"] is None  # it does not fit the column
    assert json.loads(reject["body"])["id"] == 2**63  # the text keeps it exactly
    assert _count(migrated, "conversations") == 2


def test_a_number_beyond_a_double_is_quarantined_where_the_parser_reads_past_it(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """A 70-bit integer has the file re-read by ijson's pure-Python parser, which reads -1e400
    as -inf (it refuses 1e400, and so does yajl: the file is then refused whole)."""
    big, negative = _conversation(1), _conversation(2)
    big["user_information"] = {"big": 2**70}
    negative["user_information"] = {"n": "NUMBER"}
    path = _write(tmp_path / "inf.json", [big, negative, _conversation(3)])
    path.write_text(path.read_text().replace('"NUMBER"', "-1e400"))

    etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated, check=True)
    (reject,) = _rejects(migrated)
    assert reject["conversation_id"] == 2
    assert "beyond the range of a double-precision float" in reject["error"]  # -1e400
    assert _count(migrated, "conversations") == 2


def test_a_message_id_beyond_64_bits_names_the_conversation(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    conversation = _conversation(7)
    conversation["messages"][2]["id"] = -(2**63) - 1
    failed = etl("load-file", str(_write(tmp_path / "m.json", [conversation])), wh=migrated)
    assert failed.code == ExitCode.DATA
    assert "conversation 7, field 'messages[2].id'" in failed.output
    assert "out of range for bigint" in failed.output


def test_a_message_id_held_by_a_stored_conversation_that_is_reloaded(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """The stored holder keeps its message even when it is reloaded in the same batch as the
    newcomer that claims it (found in review: the newcomer won, the holder was refused and the
    window failed on the key)."""
    holder, newcomer = _conversation(1), _conversation(2)
    etl("load-file", str(_write(tmp_path / "a.json", [holder])), wh=migrated, check=True)
    newcomer["messages"][0]["id"] = holder["messages"][0]["id"]
    changed = copy.deepcopy(holder)
    changed["reviewed"] = not changed.get("reviewed")
    path = _write(tmp_path / "b.json", [newcomer, changed])

    failed = etl("load-file", str(path), wh=migrated)
    assert failed.code == ExitCode.DATA
    assert "conversation 2: its message id" in failed.output
    assert "already belongs to conversation 1" in failed.output

    etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated, check=True)
    assert [r["conversation_id"] for r in _rejects(migrated)] == [2]
    assert _count(migrated, "conversations") == 1  # 1, reloaded with its change


def test_a_bad_later_copy_in_the_same_batch_leaves_the_good_one_loaded(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """As when the copies come in different batches or windows: the bad copy is quarantined
    and the good one loaded (docs/schema.md). It used to take the good copy down with it."""
    good, other = _conversation(1), _conversation(2)
    bad = copy.deepcopy(good)
    bad["messages"][1]["time"] = "2024-03-25T10:00:00"  # naive: refused
    path = _write(tmp_path / "export.json", [good, bad, other])

    result = etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated)

    assert result.code == 0, result.output
    assert "2 new, 0 changed, 0 unchanged, 0 older, 1 rejected" in result.output
    assert _count(migrated, "conversations") == 2
    (reject,) = _rejects(migrated)
    assert (reject["conversation_id"], reject["position"]) == (1, 1)
    assert json.loads(reject["body"]) == bad


def test_an_earlier_copy_that_claims_a_message_is_quarantined_too(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """Refused at the merge (its message id belongs to conversation 5), an earlier copy is
    quarantined and the later one loaded, as in batches of one (found in review: the batch
    kept only the later copy, so the earlier one was never checked)."""
    holder = _conversation(5)
    etl("load-file", str(_write(tmp_path / "a.json", [holder])), wh=migrated, check=True)
    claiming, good = _conversation(1), _conversation(1)
    claiming["messages"][0]["id"] = holder["messages"][0]["id"]
    path = _write(tmp_path / "b.json", [claiming, good])

    failed = etl("load-file", str(path), wh=migrated)
    assert failed.code == ExitCode.DATA, failed.output
    assert "already belongs to conversation 5" in failed.output

    etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated, check=True)
    assert [(r["conversation_id"], r["position"]) for r in _rejects(migrated)] == [(1, 0)]
    assert _count(migrated, "conversations") == 2


def test_quarantine_of_a_conversation_too_deep_to_encode_again(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """The body's last conversation is parsed by ijson (no text as sent); nested this deep it
    cannot be encoded again: it is quarantined with a note instead of crashing the run."""
    deep = _conversation(2)
    deep["user_information"] = "DEEP"
    path = _write(tmp_path / "deep.json", [_conversation(1), deep])
    path.write_text(path.read_text().replace('"DEEP"', "[" * 995 + "]" * 995))
    result = etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated)
    assert result.code == 0, result.output
    (reject,) = _rejects(migrated)
    assert reject["conversation_id"] == 2 and "nested too deeply" in reject["error"]
    assert json.loads(reject["body"])["_not_kept"].startswith("the conversation could not be")
    assert _count(migrated, "conversations") == 1
    again = etl("reprocess-rejects", wh=migrated, check=True)
    assert "still cannot be loaded, kept" in again.output
    assert [r["attempts"] for r in _rejects(migrated)] == [2]


def test_a_file_name_that_is_not_utf8(migrated: TestWarehouse, tmp_path: Path) -> None:
    path, _ = _poisoned_export(tmp_path)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/exp\xf6rt.json"))
    path.rename(odd)
    result = etl("load-file", "--on-bad-conversation", "quarantine", str(odd), wh=migrated)
    assert result.code == 0, result.output
    (reject,) = _rejects(migrated)
    assert "exp\\xf6rt.json" in reject["source"]


def test_only_the_conversations_that_must_be_refused_are(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """Stored: 4 holds message 40, 1 holds message 10. The window: 1 again without 10 but
    with 40 (refused: 4 keeps 40), so 1's stored copy stays and keeps 10; 2 with 10 and 20
    (refused: 1 keeps 10); 3 with 20 and 30 (loads: 2 is not loaded, 20 is free). Found in
    review: 3 was refused too, "message 20 already belongs to conversation 2"."""

    def shaped(cid: int, ids: list[int]) -> dict[str, Any]:
        conversation = _conversation(cid)
        conversation["messages"] = conversation["messages"][: len(ids)]
        for message, mid in zip(conversation["messages"], ids, strict=True):
            message["id"] = mid
        return conversation

    stored = [shaped(4, [40]), shaped(1, [10])]
    etl("load-file", str(_write(tmp_path / "a.json", stored)), wh=migrated, check=True)
    window = [shaped(1, [40, 11]), shaped(2, [10, 20]), shaped(3, [20, 30])]
    path = _write(tmp_path / "b.json", window)
    result = etl("load-file", "--on-bad-conversation", "quarantine", str(path), wh=migrated)
    assert result.code == 0, result.output
    assert sorted(r["conversation_id"] for r in _rejects(migrated)) == [1, 2]
    assert _count(migrated, "conversations") == 3  # 4, 1 (the stored copy) and 3
