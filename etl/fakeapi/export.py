"""The export query: request validation, matching, and the query_info/conversation/post elements."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from etl.fakeapi.dataset import Dataset, dumps
from etl.fakeapi.timefmt import BoundError, format_bound, iso_us, parse_bound, to_us

DEFAULT_ENVIRONMENT = "live"


class RequestError(Exception):
    """A request the API refuses with 400 and this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ExportQuery:
    """A validated export request."""

    start: datetime
    end: datetime
    environment: str = DEFAULT_ENVIRONMENT
    only_masked: bool = False
    conversation_ids: list[int] | None = None
    echo: dict[str, Any] = field(default_factory=dict)  # the query as understood (defaults in)


def parse_query(body: bytes, zone: tzinfo) -> ExportQuery:
    """Validate a request body; unknown filter keys are accepted and echoed."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise RequestError("request body must be a JSON object")
    for key in ("from", "to"):
        if key not in obj:
            raise RequestError(f"missing required key '{key}'")
    try:
        start = parse_bound("from", obj["from"], zone)
        end = parse_bound("to", obj["to"], zone)
    except BoundError as exc:
        raise RequestError(str(exc)) from None
    if start >= end:
        raise RequestError("'from' must be before 'to'")
    ids = obj.get("conversation_ids")
    if ids is not None and (not isinstance(ids, list) or not all(type(i) is int for i in ids)):
        raise RequestError("'conversation_ids' must be a list of integers")
    env = obj.get("environment", DEFAULT_ENVIRONMENT)
    if not isinstance(env, str):
        raise RequestError("'environment' must be a string")
    masked = obj.get("only_masked", False)
    if not isinstance(masked, bool):
        raise RequestError("'only_masked' must be a boolean")
    echo = {**obj, "environment": env, "only_masked": masked}
    return ExportQuery(start, end, env, masked, ids, dict(sorted(echo.items())))


class ExportResponse:
    """The elements of one export response, produced lazily (select, then stream)."""

    def __init__(
        self,
        dataset: Dataset,
        query: ExportQuery,
        zone: tzinfo,
        now_us: int,
        *,
        latency: float = 0.0,
        rate: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
        deleted: frozenset[int] = frozenset(),
    ) -> None:
        """`latency`: seconds the query takes before the first byte (as a real server's
        query_seconds); `rate`: conversations serialized per second (None: as fast as it can);
        `deleted`: ids the vendor deleted, never exported."""
        self.dataset, self.query, self.zone, self.now_us = dataset, query, zone, now_us
        self._rate, self._sleep = rate, sleep
        t0 = time.perf_counter()
        self.indexes = dataset.select(
            to_us(query.start),
            to_us(query.end),
            query.conversation_ids,
            query.environment,
            now_us,
        )
        if deleted:
            self.indexes = [i for i in self.indexes if dataset.ids[i] not in deleted]
        if latency > 0:
            sleep(latency)
        self.query_seconds = time.perf_counter() - t0
        self.sent = 0
        self._t_stream = t0

    @property
    def count(self) -> int:
        return len(self.indexes)

    def query_info(self, announce_extra: int = 0) -> bytes:
        self._t_stream = time.perf_counter()
        return dumps(
            {
                "type": "query_info",
                "interpreted_query_range": [
                    format_bound(self.query.start, self.zone),
                    format_bound(self.query.end, self.zone),
                ],
                "current_time": iso_us(self.now_us, self.zone),
                "query_seconds": self.query_seconds,
                "query": self.query.echo,
                "conversations": self.count + announce_extra,
            }
        )

    def conversations(self) -> Iterator[bytes]:
        payload, masked, now_us = self.dataset.payload, self.query.only_masked, self.now_us
        interval = 1.0 / self._rate if self._rate else 0.0
        due = time.perf_counter()
        for i in self.indexes:
            if interval:
                due += interval
                if (wait := due - time.perf_counter()) > 0:
                    self._sleep(wait)
            yield payload(i, masked, now_us)
            self.sent += 1

    def post_query_info(self, announce_extra: int = 0) -> bytes:
        ser = max(time.perf_counter() - self._t_stream, 1e-9)
        n = self.sent + announce_extra
        return dumps(
            {
                "type": "post_query_info",
                "query_seconds": self.query_seconds,
                "total_seconds": self.query_seconds + ser,
                "serialization_seconds": ser,
                "secs/conversation": ser / n if n else 0.0,
                "conversations/sec": n / ser,
                "conversations": n,
            }
        )

    def items(self) -> Iterator[bytes]:
        """The normal response: query_info, every conversation, post_query_info."""
        yield self.query_info()
        yield from self.conversations()
        yield self.post_query_info()


def error_element(message: str) -> bytes:
    return dumps({"type": "error", "message": message})
