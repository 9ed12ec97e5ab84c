"""Local dates and hours in the reporting time zone, stored beside each conversation.

The metric views group conversations by the local day and hour they started. SQLite knows no
time zone rules, and PostgreSQL's tz database need not be Python's, so neither computes them:
the loader stores `conversations.local_date` and `local_hour`, computed here with Python's
zoneinfo, and both warehouses group the same values. The warehouse records the zone they were
computed in (`etl_settings`); a run configured with another zone refuses to mix the two, and
`etl migrate` recomputes every stored conversation for the new one (`relocalize`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import Final

from sqlalchemy import Connection, MetaData, bindparam, select, update

from etl.errors import ConfigError
from etl.load.engine import dialect_insert
from etl.load.schema import table_of
from etl.windows import parse_zone

ZONE_SETTING: Final = "reporting.timezone"

# Conversations recomputed per UPDATE statement: bounds the memory of a relocalization, not
# its transaction (one for the whole warehouse, so that no view ever mixes two zones).
_BATCH: Final = 5000


def zone_name(zone: tzinfo) -> str:
    """The name a zone is recorded under: its IANA key, or "UTC"."""
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else str(zone)


def local_date_hour(instant: datetime | None, zone: tzinfo) -> tuple[date | None, int | None]:
    """The local day and hour of an instant in `zone`; None for a conversation without one,
    and for an instant whose local day Python cannot hold (9999-12-31T23:30Z in a zone east
    of UTC is in year 10000): the instant itself loads, the views leave it out."""
    if instant is None:
        return None, None
    try:
        local = instant.astimezone(zone)
    except OverflowError:
        return None, None
    return local.date(), local.hour


def stored_zone(conn: Connection, metadata: MetaData, *, share: bool = False) -> tzinfo | None:
    """The zone the stored local dates are for; None before any was recorded.

    `share` holds the setting against a relocalization until the caller's transaction ends
    (PostgreSQL's FOR SHARE; SQLite's single writer needs none), so that a window never
    commits local dates of a zone the warehouse has just left.
    """
    settings = table_of(metadata, "etl_settings")
    query = select(settings.c.value).where(settings.c.key == ZONE_SETTING)
    if share:
        query = query.with_for_update(read=True)
    name = conn.execute(query).scalar_one_or_none()
    return parse_zone(name) if name is not None else None


def refuse_other_zone(stored: tzinfo | None, wanted: tzinfo, warehouse: str) -> None:
    """Raise ConfigError when the stored local dates are for another zone than `wanted`."""
    if stored is None or zone_name(stored) == zone_name(wanted):
        return
    raise ConfigError(
        f"reporting.timezone is {zone_name(wanted)}, but the local dates in the warehouse "
        f"{warehouse} are for {zone_name(stored)}: run `etl migrate` to recompute them for "
        f"{zone_name(wanted)}, or set reporting.timezone back to {zone_name(stored)}"
    )


def relocalize(conn: Connection, metadata: MetaData, zone: tzinfo) -> int | None:
    """Record `zone` as the reporting zone and recompute every conversation's local date and
    hour for it, in the caller's transaction. The number recomputed; None when the warehouse
    was already in `zone` (nothing written)."""
    settings = table_of(metadata, "etl_settings")
    name = zone_name(zone)
    # The row is created first, so that the lock below always has a row to take: two
    # processes relocalizing at once then take turns instead of both recomputing.
    conn.execute(
        dialect_insert(conn, settings)
        .values(key=ZONE_SETTING, value="", updated_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[settings.c.key])
    )
    current = conn.execute(
        select(settings.c.value).where(settings.c.key == ZONE_SETTING).with_for_update()
    ).scalar_one()
    if current == name:
        return None
    conversations = table_of(metadata, "conversations")
    statement = (
        update(conversations)
        .where(conversations.c.id == bindparam("conversation_id"))
        .values(local_date=bindparam("new_date"), local_hour=bindparam("new_hour"))
    )
    recomputed = 0
    after: int | None = None
    while True:
        query = select(conversations.c.id, conversations.c.created_at).order_by(conversations.c.id)
        if after is not None:
            query = query.where(conversations.c.id > after)
        rows = conn.execute(query.limit(_BATCH)).all()
        if not rows:
            break
        values = []
        for row in rows:
            day, hour = local_date_hour(row.created_at, zone)
            values.append({"conversation_id": row.id, "new_date": day, "new_hour": hour})
        conn.execute(statement, values)
        recomputed += len(rows)
        after = rows[-1].id
    conn.execute(
        update(settings)
        .where(settings.c.key == ZONE_SETTING)
        .values(value=name, updated_at=datetime.now(UTC))
    )
    return recomputed
