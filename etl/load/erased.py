"""The references and authentication identifiers `etl forget` erased, kept as keyed hashes.

An erasure request that names a person (`--authentication-identifier`) or a conversation by its
reference must also hold for the conversations not stored when it runs: one a window was
loading at that moment, one a later backfill of older dates brings, one the vendor exports
again. Each value is recorded in `etl_erased_keys`, and every load leaves out (as `forgotten`)
a conversation or quarantined copy that has one. The values themselves are not kept: each is
hashed with BLAKE2b under a random key that the migration stored in `etl_settings`
(`erasure.key`), so the table cannot be matched with identifiers from anywhere else. Whoever
can read both the key and the table can still test whether a given value was erased: the
README's dashboards role is denied the table.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, Final

from sqlalchemy import Connection, MetaData, select

from etl.errors import ConfigError
from etl.load.engine import dialect_insert
from etl.load.schema import table_of
from etl.normalize import TABLE_COLUMNS
from etl.normalize.clean import as_stored

KEY_SETTING: Final = "erasure.key"
REFERENCE: Final = "reference"
IDENTIFIER: Final = "authentication_identifier"
_REFERENCE_AT: Final = TABLE_COLUMNS["conversations"].index(REFERENCE)
_IDENTIFIER_AT: Final = TABLE_COLUMNS["conversations"].index(IDENTIFIER)


def new_key() -> str:
    """A hashing key for `etl_settings` (the migration that adds `etl_erased_keys` stores one)."""
    return secrets.token_hex(32)


def digest(key: bytes, value: str) -> str:
    """The hex digest a value is recorded and looked up under."""
    return blake2b(value.encode("utf-8", "surrogatepass"), key=key, digest_size=16).hexdigest()


def spellings(value: Any) -> tuple[str, ...]:
    """The texts an erasure request may name `value` by: as sent, and as a column stores it
    (a NUL or lone surrogate replaced: what the person asking could see and copy); none for
    a value that is not text."""
    if not isinstance(value, str):
        return ()
    stored = as_stored(value)
    return (value,) if stored == value else (value, stored)


@dataclass(frozen=True)
class ErasedKeys:
    """The erased values of one warehouse, as (kind, digest), and the key they are hashed with."""

    key: bytes = b""
    digests: frozenset[tuple[str, str]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.digests)

    def name(self, reference: Any, identifier: Any) -> bool:
        """Whether a conversation with this reference and identifier was erased: as sent, or
        as stored (a NUL or lone surrogate replaced, which is the value a user can name)."""
        return self._erased(REFERENCE, reference) or self._erased(IDENTIFIER, identifier)

    def _erased(self, kind: str, value: Any) -> bool:
        return any((kind, digest(self.key, text)) in self.digests for text in spellings(value))

    def name_row(self, row: tuple[Any, ...]) -> bool:
        """`name`, for a `conversations` row in TABLE_COLUMNS order."""
        return self.name(row[_REFERENCE_AT], row[_IDENTIFIER_AT])

    def name_text(self, body: str | bytes) -> bool:
        """`name`, for a conversation's JSON text (a quarantined copy: it may not be JSON, or
        not an object)."""
        try:
            conversation = json.loads(body)
        except (ValueError, RecursionError):  # quarantined for being neither, maybe
            return False
        return isinstance(conversation, dict) and self.name(
            conversation.get(REFERENCE), conversation.get(IDENTIFIER)
        )


def read(conn: Connection, metadata: MetaData) -> ErasedKeys:
    """Every erased value of the warehouse (none: an empty ErasedKeys, read in one query)."""
    table = table_of(metadata, "etl_erased_keys")
    rows = conn.execute(select(table.c.kind, table.c.digest)).all()
    if not rows:
        return ErasedKeys()
    return ErasedKeys(_key(conn, metadata), frozenset((kind, value) for kind, value in rows))


def record(
    conn: Connection,
    metadata: MetaData,
    *,
    references: Collection[str],
    identifiers: Collection[str],
    run_id: str,
) -> int:
    """Record erased values in the caller's transaction; how many were asked for."""
    values = [(REFERENCE, v) for v in references] + [(IDENTIFIER, v) for v in identifiers]
    if not values:
        return 0
    key, now = _key(conn, metadata), datetime.now(UTC)
    table = table_of(metadata, "etl_erased_keys")
    rows = [
        {"kind": kind, "digest": digest(key, value), "forgotten_at": now, "run_id": run_id}
        for kind, value in values
    ]
    conn.execute(
        dialect_insert(conn, table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[table.c.kind, table.c.digest])
    )
    return len(values)


def _key(conn: Connection, metadata: MetaData) -> bytes:
    settings = table_of(metadata, "etl_settings")
    query = select(settings.c.value).where(settings.c.key == KEY_SETTING)
    value = conn.execute(query).scalar_one_or_none()
    if value is None:
        raise ConfigError(
            f"the warehouse has no {KEY_SETTING} in etl_settings, which migration 0010 stores "
            "and erasure needs: run `etl migrate`"
        )
    return bytes.fromhex(value)
