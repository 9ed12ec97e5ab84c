"""Merging a window's conversations into the warehouse: the rule and the interface, once.

`WindowLoader` is what the runner talks to; `etl/load/postgres.py` and `etl/load/sqlite.py`
each implement its database side whole. A window goes through it batch by batch, inside the
caller's transaction:

    loader.merge(normalized)               # each batch: drops the unchanged, loads the rest
    ...
    loader.finish()                        # once, before the commit
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from typing import Any, ClassVar, Final, TypeVar

from sqlalchemy import ColumnElement, Connection, MetaData, Table, and_, case, or_, select, update

from etl.load import erased
from etl.load.engine import dialect_insert
from etl.load.erased import ErasedKeys
from etl.load.localtime import local_date_hour, stored_zone
from etl.load.schema import table_of
from etl.normalize import (
    CHILD_TABLES,
    DIMENSION_TABLES,
    TABLE_COLUMNS,
    NormalizedConversation,
    NormalizeError,
)
from etl.normalize.digest import TOO_DEEP
from etl.normalize.references import Order, reference_order
from etl.normalize.rejects import Rejected, rejected

Row = tuple[Any, ...]
Stored = tuple[str, datetime | None]  # a stored conversation's content_hash and exported_at

# Columns the loader adds to each `conversations` row after the normalizer's: bookkeeping,
# the local day and hour of created_at in the warehouse's reporting zone (etl.load.localtime),
# the state key the copy was exported under, and deleted_at (NULL: the export returned it).
LOAD_COLUMNS: Final = (
    "content_hash",
    "exported_at",
    "loaded_at",
    "load_run_id",
    "local_date",
    "local_hour",
    "state_key",
    "deleted_at",
)
_CREATED_AT: Final = TABLE_COLUMNS["conversations"].index("created_at")
CONVERSATION_COLUMNS: Final = TABLE_COLUMNS["conversations"] + LOAD_COLUMNS
# Columns the loader adds to each dimension row: when each attribute's value was seen, so that
# "the latest non-null value per attribute" holds across windows loaded in any order.
SEEN_COLUMNS: Final = {
    table: tuple(
        f"{column}_seen_at"
        for column in TABLE_COLUMNS[table]
        if column not in ("id", "last_seen_at")
    )
    for table in DIMENSION_TABLES
}
# The columns each table is written with, in the order of the loader's rows.
WRITTEN_COLUMNS: Final = {
    **TABLE_COLUMNS,
    "conversations": CONVERSATION_COLUMNS,
    **{table: TABLE_COLUMNS[table] + SEEN_COLUMNS[table] for table in DIMENSION_TABLES},
}


T = TypeVar("T")

# SQLite refuses a statement with more bound variables than SQLITE_MAX_VARIABLE_NUMBER, which
# is 999 in builds before 3.32: id lists in statements both warehouses run go in chunks.
ID_CHUNK: Final = 900


def chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """`values` (ids, or other bound values) in slices of at most ID_CHUNK."""
    for start in range(0, len(values), ID_CHUNK):
        yield values[start : start + ID_CHUNK]


# What a window does with each conversation it carries (etl_runs.conversations_<outcome>).
NEW: Final = "new"  # not stored before: loaded
CHANGED: Final = "changed"  # stored, differs, and this export is not older: replaced
UNCHANGED: Final = "unchanged"  # stored with the same content hash: nothing written
OLDER: Final = "older"  # stored from a later (or a known) export: the stored copy stays
REJECTED: Final = "rejected"  # could not be loaded: quarantined in etl_rejects
FORGOTTEN: Final = "forgotten"  # erased by `etl forget` (a tombstone): not loaded, not kept
OUTCOMES: Final = (NEW, CHANGED, UNCHANGED, OLDER, REJECTED, FORGOTTEN)
LOADED: Final = frozenset({NEW, CHANGED})


def outcome(
    exported_at: datetime | None, content_hash: str, stored: Stored | None, *, replace: bool = False
) -> str:
    """What an incoming copy does to the stored one: NEW, CHANGED, UNCHANGED or OLDER.

    A copy replaces the stored one only when it differs and is not from an older export:
    re-loading a window changes no row, and an old window loaded after a newer one never
    brings stale data back. The export time is `query_info.current_time`; a saved file
    without one (`exported_at` None) has no place in that order, so it replaces only a copy
    without a known export time, unless the user says `replace` (`etl load-file --replace`).
    """
    if stored is None:
        return NEW
    stored_hash, stored_exported_at = stored
    if stored_hash == content_hash:
        return UNCHANGED
    if replace or stored_exported_at is None:
        return CHANGED
    if exported_at is None or exported_at < stored_exported_at:
        return OLDER
    return CHANGED


class ReferenceFold:
    """A window's references to one dimension (intents or actions), folded per id as they come.

    Per attribute, the value of the latest reference (`reference_order`: by `last_seen_at`,
    then by arrival, the later one on a tie; undated references count as the oldest) that has
    one: a reference without a title never blanks the title an earlier one gave. Each id holds
    one running row and, per attribute, the order of the value it holds: memory stays one
    row per id and each reference costs one pass over its few columns, however many distinct
    values (a per-occurrence `confidence` in `extra`, say) the window carries. Rows are laid out
    as TABLE_COLUMNS: id first, then the attributes, last_seen_at and extra last; `rows()`
    adds when each attribute's value was seen (SEEN_COLUMNS).
    """

    __slots__ = ("_arrivals", "_rows")

    def __init__(self) -> None:
        self._rows: dict[Any, tuple[list[Any], list[Order]]] = {}
        self._arrivals = 0

    def add(self, rows: Iterable[Row]) -> None:
        held_rows = self._rows
        arrival = self._arrivals
        for row in rows:
            extra = row[-1]
            if extra is not None and "_original" in extra:
                # The exact text of a value with a NUL or a lone surrogate describes that one
                # reference's columns, which may not win here: the message rows keep it.
                rest = {k: v for k, v in extra.items() if k != "_original"}
                row = (*row[:-1], rest or None)
            arrival += 1
            seen = row[-2]
            key = reference_order(seen, arrival)
            held = held_rows.get(row[0])
            if held is None:
                held_rows[row[0]] = (list(row), [key] * len(row))
                continue
            values, keys = held
            for i in range(1, len(row)):
                value = row[i]
                if value is not None and (key > keys[i] or values[i] is None):
                    values[i] = value
                    keys[i] = key
        self._arrivals = arrival

    def rows(self) -> list[Row]:
        """One row per id: each attribute the latest non-null, last_seen_at the latest, then
        (SEEN_COLUMNS) when each attribute's value was seen (None: no value, or undated)."""
        folded = []
        for values, keys in self._rows.values():
            seen = [
                key[1] if key[0] and value is not None else None
                for value, key in zip(values[1:-2], keys[1:-2], strict=True)
            ]
            extra_key = keys[-1]
            seen.append(extra_key[1] if extra_key[0] and values[-1] is not None else None)
            folded.append((*values, *seen))
        return folded

    def clear(self) -> None:
        self._rows.clear()


@dataclass(frozen=True)
class Origin:
    """Where a window's conversations come from, as etl_rejects records it."""

    state_key: str | None = None
    source: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


class WindowLoader(ABC):
    """Merges a window's conversations, batch by batch, inside the caller's transaction.

    A stored conversation is replaced only when `outcome` says so; its child rows are
    replaced wholesale (deleted by conversation_id, then inserted). The dimension references
    its messages carry are folded over the window (`ReferenceFold`) and upserted once, in
    `finish`: per attribute, the latest non-null value wins, stored or new.
    """

    def __init__(
        self,
        conn: Connection,
        metadata: MetaData,
        *,
        run_id: str,
        exported_at: datetime | None,
        replace: bool = False,
        lock_wait: timedelta | None = None,
        erasing: bool = False,
    ) -> None:
        self._conn = conn
        self._tables = {name: table_of(metadata, name) for name in TABLE_COLUMNS}
        self._schema = metadata.schema
        self._run_id = run_id
        self._exported_at = exported_at.astimezone(UTC) if exported_at is not None else None
        self._replace_all = replace
        self.rows: dict[str, int] = dict.fromkeys(TABLE_COLUMNS, 0)
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._references = {table: ReferenceFold() for table in DIMENSION_TABLES}
        self._references_plain = True
        self._rejects = table_of(metadata, "etl_rejects")
        self._tombstones = table_of(metadata, "etl_tombstones")
        self.origin = Origin()
        # The state key of the export this window loads from the source; None for a saved
        # file, whose filters are unknown: its conversations take no part in detecting
        # deletions (detect_deletes, confirm_returned).
        self.source_key: str | None = None
        # Every conversation id the window carried (loaded or not), and how many rejects it
        # carried without a readable id: what deletion detection compares with.
        self.returned: set[int] = set()
        self.unidentified = 0
        # `etl forget` records what it erases by reference or identifier and then waits for
        # the windows loading at that moment (PostgreSQL: an advisory lock they hold shared);
        # a window that starts later reads what it recorded.
        self._erased = ErasedKeys()
        if not erasing:
            self._hold_off_erasures()
            self._erased = erased.read(conn, metadata)
        # The zone of the local dates this window writes, held (FOR SHARE) from the start:
        # `etl migrate` takes the setting before the conversations it recomputes, so taking
        # it after a window's row locks would deadlock with it. An erasure writes no
        # conversation, and its role may not lock the setting: None, NULL dates, never used.
        self._zone = None if erasing else stored_zone(conn, metadata, share=True)

    # Whether windows may hold write transactions at the same time (PostgreSQL), or must take
    # turns (SQLite: one writer per database).
    concurrent_windows: ClassVar[bool]

    def merge(
        self, batch: Sequence[NormalizedConversation], rejects: Sequence[Rejected] = ()
    ) -> None:
        """Load the conversations of a batch (ids unique within it) that are NEW or CHANGED,
        and quarantine `rejects` (conversations the caller could not normalize)."""
        self.returned.update(c.id for c in batch)
        self.returned.update(r.conversation_id for r in rejects if r.conversation_id is not None)
        self.unidentified += sum(1 for r in rejects if r.conversation_id is None)
        rejects = self._not_forgotten(rejects)
        outcomes = self.changed(batch)
        loading = [c for c, result in zip(batch, outcomes, strict=True) if result in LOADED]
        refused = self._claimed_messages(loading)
        if refused:
            loading = [c for c in loading if c.id not in refused]
            for c, result in zip(batch, outcomes, strict=True):
                if c.id in refused:
                    self.outcomes[result] -= 1
            rejects = [*rejects, *refused.values()]
        replacing = [c.id for c, result in zip(batch, outcomes, strict=True)
                     if result == CHANGED and c.id not in refused]  # fmt: skip
        self.load(loading, replacing)
        unloaded = [c.id for c, result in zip(batch, outcomes, strict=True)
                    if result == NEW and c.id in refused]  # fmt: skip
        if unloaded:
            self._release(unloaded)
        if rejects:
            self._quarantine(rejects)

    def unchanged(self, conversations: Sequence[tuple[int, str]]) -> set[int]:
        """Of conversations not normalized yet, given as (id, content hash), the ids of those
        stored with the same hash: counted UNCHANGED and returned now, as `merge` would count
        them, so that the caller need not normalize them only to have them dropped.

        Read without locks, as `changed` reads them: whatever another window writes
        meanwhile, the result is that of this window coming first. `etl forget` deletes what
        it erases, so an erased conversation is not among them (one erased while this read
        runs counts as unchanged rather than forgotten; nothing is written either way).
        """
        if not conversations:
            return set()
        stored = self._stored([cid for cid, _ in conversations])
        exported_at, replace = self._exported_at, self._replace_all
        same = {cid for cid, content_hash in conversations
                if outcome(exported_at, content_hash, stored.get(cid), replace=replace)
                == UNCHANGED}  # fmt: skip
        self.outcomes[UNCHANGED] += len(same)
        self.returned.update(same)
        return same

    def changed(self, batch: Sequence[NormalizedConversation]) -> list[str]:
        """What each conversation of a batch (ids unique within it) does: see `outcome`.

        The stored copies are read without locks; those about to be written (NEW or CHANGED)
        are then locked and read again (`_lock_for_writing`), and decided on what that read.
        A conversation left alone needs no lock: whatever another window writes meanwhile,
        the result is that of this window coming first.
        """
        if not batch:
            return []
        stored = self._stored([c.id for c in batch])
        exported_at, replace = self._exported_at, self._replace_all

        def decide(c: NormalizedConversation) -> str:
            return outcome(exported_at, c.content_hash, stored.get(c.id), replace=replace)

        writing = [c.id for c in batch if decide(c) in LOADED]
        if writing:
            locked = self._lock_for_writing(writing, stored)
            for i in writing:
                if i in locked:
                    stored[i] = locked[i]
                else:
                    stored.pop(i, None)
        # Read after the locks: `forget` locks what it erases the same way, so a tombstone
        # committed while this window waited for a conversation is seen here.
        forgotten = self._forgotten([c.id for c in batch])
        if self._erased:
            named = {c.id for c in batch if self._erased.name_row(c.rows["conversations"][0])}
            # A stored copy without the erased value (the vendor added it since): this
            # conversation is the person's too, and goes.
            stored_named = sorted(i for i in named if i in stored)
            if stored_named:
                self._delete(stored_named)
                for i in stored_named:
                    del stored[i]
            forgotten |= named
        if forgotten:
            placeholders = [i for i in writing if i in forgotten and i not in stored]
            if placeholders:
                self._release(placeholders)
        outcomes = [FORGOTTEN if c.id in forgotten else decide(c) for c in batch]
        for result in outcomes:
            self.outcomes[result] += 1
        return outcomes

    def confirm_returned(self) -> None:
        """After a window's export from the source ended: the conversations it returned are
        there, whatever this window did with them. A copy marked deleted loses its mark, and
        one loaded before the state key was recorded (migration 0006) gets this window's, so
        that deletion detection covers it from now on. (A changed copy was rewritten with
        both already.) Each is one statement in the usual case, answered by a partial index."""
        assert self.source_key is not None, "a saved file says nothing of the source"
        conversations = self._tables["conversations"]
        if self._exported_at is not None:
            # A mark is the export time that found the conversation gone: an export taken
            # before it (a window that started first and commits last) returned it before it
            # went, and says nothing of now; nor does one without a time (as _later_marks).
            marked = and_(
                conversations.c.deleted_at.is_not(None),
                conversations.c.deleted_at <= self._exported_at,
            )
            self._update_returned(marked, deleted_at=None)
        self._update_returned(conversations.c.state_key.is_(None), state_key=self.source_key)

    def _update_returned(self, pending: ColumnElement[bool], **values: Any) -> None:
        conversations = self._tables["conversations"]
        if self._conn.execute(select(conversations.c.id).where(pending).limit(1)).first() is None:
            return
        for chunk in chunks(sorted(self.returned)):
            self._conn.execute(
                update(conversations).where(pending, conversations.c.id.in_(chunk)).values(values)
            )

    def _forgotten(self, ids: list[int]) -> set[int]:
        """Those of `ids` that `etl forget` erased (etl_tombstones)."""
        found: set[int] = set()
        column = self._tombstones.c.conversation_id
        for chunk in chunks(ids):
            found.update(self._conn.execute(select(column).where(column.in_(chunk))).scalars())
        return found

    def _not_forgotten(self, rejects: Sequence[Rejected]) -> Sequence[Rejected]:
        """Rejects without the erased conversations: the quarantine would keep their text.

        Their ids are locked first, as for a conversation about to be written (`forget`
        locks what it erases the same way), so that a tombstone committed meanwhile is seen,
        and a forget that comes later waits for this window and then erases its quarantined
        copy too. The placeholder rows go at once: deleting one still holds its key until
        the transaction ends.
        """
        if self._erased:
            kept = [r for r in rejects if not self._erased.name_text(r.body)]
            self.outcomes[FORGOTTEN] += len(rejects) - len(kept)
            rejects = kept
        ids = sorted({r.conversation_id for r in rejects if r.conversation_id is not None})
        if not ids:
            return rejects
        stored = self._lock_for_writing(ids, self._stored(ids))
        placeholders = [i for i in ids if i not in stored]
        if placeholders:
            self._release(placeholders)
        forgotten = self._forgotten(ids)
        if not forgotten:
            return rejects
        self.outcomes[FORGOTTEN] += sum(1 for r in rejects if r.conversation_id in forgotten)
        return [r for r in rejects if r.conversation_id not in forgotten]

    def lock(self, ids: list[int], still: ColumnElement[bool]) -> list[int]:
        """Lock conversations as a window locks what it writes, waiting for any window writing
        one of them to end; then, read again under the locks, those stored that match `still`
        (chosen before the locks, a conversation may have changed while this waited), in id
        order."""
        if not ids:
            return []
        stored = self._lock_for_writing(ids, self._stored(ids))
        placeholders = [i for i in ids if i not in stored]
        if placeholders:
            self._release(placeholders)
        conversations = self._tables["conversations"]
        found: list[int] = []
        for chunk in chunks(sorted(stored)):
            query = select(conversations.c.id).where(conversations.c.id.in_(chunk), still)
            found.extend(self._conn.execute(query.order_by(conversations.c.id)).scalars())
        return found

    def erase(self, ids: list[int]) -> None:
        """Delete conversations and their child rows, locked as a window locks what it writes
        (so that a window loading one of them meanwhile either commits first and is erased,
        or waits and then finds the tombstone the caller wrote)."""
        if ids:
            self._lock_for_writing(ids, {})
            self._delete(ids)

    def detect_deletes(self, start: datetime, end: datetime, *, hard: bool) -> int:
        """After a complete export of [start, end): the stored conversations of this state key
        with an end-user interaction (a question, a button click) in it that the export did not
        return, which the source must have deleted: marked (deleted_at: this export's time, or
        now when it has none) or, `hard`, removed. The number of conversations.

        A stored copy from a later export than this one was there after this export was
        taken: it is left alone. Windows load in parallel: the candidates are locked as a
        window locks what it writes and looked for again under the locks, so that a copy
        another window wrote meanwhile (its interactions now elsewhere, or already marked or
        removed) is judged as it now is and counted once.
        """
        conversations, messages = self._tables["conversations"], self._tables["messages"]
        interacted = select(messages.c.conversation_id).where(
            messages.c.time >= start,
            messages.c.time < end,
            or_(messages.c.type == "question", messages.c.clicked_button_id.is_not(None)),
        )
        missing: ColumnElement[bool] = and_(
            conversations.c.id.in_(interacted),
            conversations.c.state_key == self.source_key,
            conversations.c.deleted_at.is_(None),
        )
        if self._exported_at is not None:
            missing = and_(
                missing,
                or_(
                    conversations.c.exported_at.is_(None),
                    conversations.c.exported_at <= self._exported_at,
                ),
            )
        candidates = sorted(
            i
            for i in self._conn.execute(select(conversations.c.id).where(missing)).scalars()
            if i not in self.returned
        )
        gone = self.lock(candidates, missing)
        if hard:
            self.erase(gone)
            return len(gone)
        mark = self._exported_at or datetime.now(UTC)
        for chunk in chunks(gone):
            self._conn.execute(
                update(conversations).where(conversations.c.id.in_(chunk)).values(deleted_at=mark)
            )
        return len(gone)

    def _claimed_messages(self, batch: Sequence[NormalizedConversation]) -> dict[int, Rejected]:
        """Conversations with a message id that another conversation holds, to quarantine.

        A message id is the messages table's key: one that belongs to another conversation
        would fail the whole window on the key. The holder keeps it: the stored conversation
        whose message it is (when that one is not being replaced, or still has it), else the
        first conversation of the batch that has it. Refusing a conversation keeps its stored
        copy, which may hold more ids, and frees the ids it claimed in the batch, so the check
        is repeated from the start until the refused set no longer changes. Without a
        quarantine the first conflict is a data error naming both conversations.
        """
        mine = {c.id: {row[0] for row in c.rows["messages"]} for c in batch}
        every = {mid for ids in mine.values() for mid in ids}
        stored = self._message_owners(list(every)) if every else {}
        if sum(map(len, mine.values())) == len(every) and all(h in mine for h in stored.values()):
            # The usual batch: no id in two of its conversations, and each stored one held by
            # a conversation the batch replaces, which lets go of it. Nothing conflicts: the
            # search below would find nothing, at a few dictionary operations per message.
            return {}

        def conflicts_given(refused: Collection[int]) -> dict[int, tuple[int, int]]:
            """Each conversation's first conflict (message id, holder) when `refused` stay."""
            claimed = {  # message id -> the conversation that keeps it
                mid: holder
                for mid, holder in stored.items()
                if holder in refused or holder not in mine or mid in mine[holder]
            }
            found: dict[int, tuple[int, int]] = {}
            for c in batch:  # a refused one is checked again but claims nothing
                conflict = next(
                    ((mid, claimed[mid]) for mid in mine[c.id] if claimed.get(mid, c.id) != c.id),
                    None,
                )
                if conflict is None:
                    if c.id not in refused:
                        claimed.update(dict.fromkeys(mine[c.id], c.id))
                else:
                    found[c.id] = conflict
            return found

        # Refused id -> (message id, its holder): recomputed until it no longer changes; if
        # it does not settle, grow it until no loaded conversation conflicts (safe, maybe
        # more than needed).
        conflicts: dict[int, tuple[int, int]] = {}
        for _ in range(len(batch) + 1):
            found = conflicts_given(conflicts.keys())
            if found.keys() == conflicts.keys():
                break
            conflicts = found
        else:
            while extra := {k: v for k, v in conflicts_given(conflicts.keys()).items()
                            if k not in conflicts}:  # fmt: skip
                conflicts.update(extra)
        return {c.id: self._claimed(c, *conflicts[c.id]) for c in batch if c.id in conflicts}

    def _claimed(self, c: NormalizedConversation, message_id: int, holder: int) -> Rejected:
        error = NormalizeError(
            f"its message id {message_id} already belongs to conversation {holder}: a message "
            "id can belong to one conversation only",
            conversation_id=c.id,
        )
        if c.body is None:  # no quarantine: the window fails
            raise error
        return rejected(c.position, {"id": c.id}, c.body, error.what)

    def load(self, batch: Sequence[NormalizedConversation], replacing: Sequence[int] = ()) -> None:
        """Replace what is stored for these conversations (ids unique within the batch);
        `replacing`: those of them that have a stored copy."""
        if not batch:
            return
        try:
            self._replace(batch, self._later_marks(replacing))
        except RecursionError:
            # Only a conversation that is not plain is encoded with the stdlib (orjson refuses
            # JSON nested deeper than 255 levels), whose recursion depends on the stack.
            suspects = [c.id for c in batch if not c.plain]
            culprit = suspects[0] if len(suspects) == 1 else None
            raise NormalizeError(TOO_DEEP, conversation_id=culprit) from None

    def _later_marks(self, ids: Sequence[int]) -> dict[int, datetime]:
        """The deletion marks (deleted_at) of `ids` that this export cannot undo: made by a
        later export, or any when this one has no time. A changed copy from an export taken
        before the one that found the conversation gone is newer content, not a return."""
        if not ids:
            return {}
        conversations = self._tables["conversations"]
        query = select(conversations.c.id, conversations.c.deleted_at).where(
            conversations.c.deleted_at.is_not(None)
        )
        if self._exported_at is not None:
            query = query.where(conversations.c.deleted_at > self._exported_at)
        marks: dict[int, datetime] = {}
        for chunk in chunks(sorted(ids)):
            rows = self._conn.execute(query.where(conversations.c.id.in_(chunk)))
            marks.update((cid, deleted_at) for cid, deleted_at in rows)
        return marks

    def _replace(
        self, batch: Sequence[NormalizedConversation], marks: Mapping[int, datetime]
    ) -> None:
        # Every id, stored or not: rows left by a conversation deleted by hand (there are no
        # foreign keys) must not block its reload.
        self._delete([c.id for c in batch])
        plain = all(c.plain for c in batch)
        suffix = (self._exported_at, datetime.now(UTC), self._run_id)
        zone = self._zone
        key = self.source_key
        conversations = [
            (
                *row,
                c.content_hash,
                *suffix,
                *(local_date_hour(row[_CREATED_AT], zone) if zone else (None, None)),
                key,
                marks.get(c.id),  # deleted_at: the export returned it, unless marked later
            )
            for c in batch
            for row in c.rows["conversations"]
        ]
        self._insert("conversations", conversations, plain)
        for table in CHILD_TABLES:
            self._insert(table, [row for c in batch for row in c.rows[table]], plain)
        for table in DIMENSION_TABLES:
            self._references[table].add(row for c in batch for row in c.rows[table])
        self._references_plain = self._references_plain and plain

    def finish(self) -> None:
        """Upsert the window's dimension rows; once, after the last batch, before the commit."""
        for table in DIMENSION_TABLES:
            rows = self._references[table].rows()
            self._references[table].clear()
            if rows:
                self._upsert_dimension(table, rows, plain=self._references_plain)
                self.rows[table] += len(rows)
        self._references_plain = True

    def _insert(self, table: str, rows: list[Row], plain: bool) -> None:
        if rows:
            self._write(table, rows, plain=plain)
            self.rows[table] += len(rows)

    def _quarantine(self, rejects: Sequence[Rejected]) -> None:
        """Keep conversations that could not be loaded in etl_rejects, once per distinct text."""
        now = datetime.now(UTC)
        origin = self.origin
        rows = [
            {
                "body_hash": blake2b(
                    r.body.encode("utf-8", "backslashreplace"), digest_size=16
                ).hexdigest(),
                "conversation_id": r.conversation_id,
                "state_key": origin.state_key,
                "source": origin.source,
                "window_start": origin.window_start,
                "window_end": origin.window_end,
                "position": r.position,
                "exported_at": self._exported_at,
                "error": r.error,
                "body": r.body,
                "run_id": self._run_id,
                "rejected_at": now,
                "last_tried_at": now,
                "attempts": 1,
            }
            for r in rejects
        ]
        rows.sort(key=lambda row: str(row["body_hash"]))  # one lock order for windows in parallel
        table = self._rejects
        statement = dialect_insert(self._conn, table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.body_hash],
            set_={
                "error": statement.excluded.error,
                "run_id": statement.excluded.run_id,
                "last_tried_at": statement.excluded.last_tried_at,
                "attempts": table.c.attempts + 1,
            },
        )
        self._conn.execute(statement, rows)
        self.outcomes[REJECTED] += len(rejects)

    @abstractmethod
    def _hold_off_erasures(self) -> None:
        """Until this window's transaction ends, keep `wait_for_windows` waiting."""

    @abstractmethod
    def wait_for_windows(self) -> None:
        """Wait until the windows loading now have ended, and keep new ones from starting
        until the caller's transaction ends (an erasure that records values to keep out)."""

    @abstractmethod
    def _stored(self, ids: list[int]) -> dict[int, Stored]:
        """The stored content_hash and exported_at of those of `ids` that are stored."""

    @abstractmethod
    def _lock_for_writing(self, ids: list[int], stored: dict[int, Stored]) -> dict[int, Stored]:
        """Lock `ids` (conversations about to be written) to the end of the transaction and
        read them again: what is stored of them now (`stored`: what `_stored` read)."""

    @abstractmethod
    def _release(self, ids: list[int]) -> None:
        """Let go of conversations `_stored` found new that this batch does not load (what a
        warehouse that locks them by a placeholder row must remove)."""

    @abstractmethod
    def _message_owners(self, message_ids: list[int]) -> dict[int, int]:
        """The conversation_id of each of `message_ids` that is stored."""

    @abstractmethod
    def _delete(self, ids: list[int]) -> None:
        """Delete the conversations and their child rows."""

    @abstractmethod
    def _write(self, table: str, rows: list[Row], *, plain: bool) -> None:
        """Insert rows (in TABLE_COLUMNS order; `conversations` with LOAD_COLUMNS too).

        `plain`: every JSON value is plain JSON that orjson encodes exactly.
        """

    @abstractmethod
    def _upsert_dimension(self, table: str, rows: list[Row], *, plain: bool) -> None:
        """Upsert dimension rows (one per id), each column set by `dimension_updates`."""


def dimension_updates(target: Table, excluded: Any) -> dict[str, ColumnElement[Any]]:
    """The SET clause of a dimension upsert: per attribute, the latest non-null value.

    Each attribute has its own time (`<attribute>_seen_at`): an incoming non-null value
    replaces the stored one when it was seen no earlier, or when the stored one has no time
    (NULL, or loaded before migration 0003); an undated incoming value only fills a gap.
    `last_seen_at` is the latest of both. `excluded` is the statement's EXCLUDED row.
    """
    updates: dict[str, ColumnElement[Any]] = {}
    for column in target.c:
        seen_name = f"{column.name}_seen_at"
        if seen_name not in target.c:
            continue
        stored, stored_seen = column, target.c[seen_name]
        incoming, incoming_seen = excluded[column.name], excluded[seen_name]
        wins = incoming.is_not(None) & (
            stored.is_(None) | stored_seen.is_(None) | (incoming_seen >= stored_seen)
        )
        updates[column.name] = case((wins, incoming), else_=stored)
        updates[seen_name] = case((wins, incoming_seen), else_=stored_seen)
    stored_last, incoming_last = target.c.last_seen_at, excluded.last_seen_at
    updates["last_seen_at"] = case(
        (stored_last.is_(None) | (incoming_last > stored_last), incoming_last), else_=stored_last
    )
    return updates


def loader_class(dialect: str) -> type[WindowLoader]:
    """The loader for a warehouse dialect ("postgresql", "sqlite")."""
    from etl.load.postgres import PostgresLoader
    from etl.load.sqlite import SQLiteLoader

    loaders: dict[str, type[WindowLoader]] = {
        "postgresql": PostgresLoader,
        "sqlite": SQLiteLoader,
    }
    return loaders[dialect]


def open_loader(
    conn: Connection,
    metadata: MetaData,
    *,
    run_id: str,
    exported_at: datetime | None,
    replace: bool = False,
    lock_wait: timedelta | None = None,
    erasing: bool = False,
) -> WindowLoader:
    """The loader for the warehouse `conn` is connected to. `lock_wait`: how long it waits for
    rows another window holds, where windows write at once (None: for ever); `erasing`: it
    only erases (WindowLoader.erase), and writes no conversation."""
    return loader_class(conn.dialect.name)(
        conn,
        metadata,
        run_id=run_id,
        exported_at=exported_at,
        replace=replace,
        lock_wait=lock_wait,
        erasing=erasing,
    )
