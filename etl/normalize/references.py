"""The order in which references to an intent or action are folded, and what it lets a
conversation leave out.

A conversation's dimension rows (`intents`, `actions`) are its references, each with the
time of the message that made it (`last_seen_at`). A window folds them per id
(etl.load.loader.ReferenceFold): per attribute, the value of the greatest reference, in
`reference_order`, that has one. A conversation refers to the same intent again and again
with the same values (on each question it was predicted for, again in the question's
analysis), and of those references only the greatest can win anything: the others are
dropped where they cost most, before they are sent to the loading process and folded there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

Row = tuple[Any, ...]
Order = tuple[bool, datetime, int]

# Where an undated reference sorts: before every dated one, as it says nothing of when.
_UNDATED: Final = datetime(1, 1, 1, tzinfo=UTC)


def reference_order(seen: datetime | None, arrival: int) -> Order:
    """A reference's place in the fold: dated after undated, then the later `seen`, then the
    later `arrival` (its position among the references folded), so that a tie goes to the
    reference that came last."""
    return (seen is not None, seen or _UNDATED, arrival)


def latest_references(rows: list[Row]) -> list[Row]:
    """A conversation's references to one dimension (rows laid out as its TABLE_COLUMNS: id
    first, last_seen_at and extra last), in their order, less each one that another of them
    with the same values and a greater `reference_order` makes redundant.

    Folding what is left gives the same row per id, values and times of each value alike,
    whatever is folded before and after it (the ids may come out in another order, which no
    loader depends on): a dropped reference would lose every attribute to the kept one, which
    holds the same value and comes later in the order. A reference with an `extra` is always
    kept (its values are not compared).
    """
    if len(rows) < 2:
        return rows
    greatest: dict[Row, Order] = {}
    compared = 0
    for arrival, row in enumerate(rows):
        if row[-1] is None:
            compared += 1
            order = reference_order(row[-2], arrival)
            values = row[:-2]
            held = greatest.get(values)
            if held is None or order > held:
                greatest[values] = order
    if len(greatest) == compared:  # no two compared references with the same values
        return rows
    kept = {order[2] for order in greatest.values()}
    return [row for arrival, row in enumerate(rows) if arrival in kept or row[-1] is not None]
