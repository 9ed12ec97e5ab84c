"""The served conversations: cached JSON bytes plus an index by end-user interaction time."""

from __future__ import annotations

import gc
import gzip
import json
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from etl.fakeapi.synth import DatasetSpec, Generated, generate
from etl.fakeapi.timefmt import parse_iso_us, to_us

MASK_CHAR = "*"


def mask_text(text: str) -> str:
    """The vendor's mask for user text: same length, every character replaced."""
    return MASK_CHAR * len(text)


def mask_conversation(conv: dict[str, Any]) -> None:
    """Replace end-user text (question input, analyses, important words) by masks, in place."""
    for msg in conv.get("messages") or ():
        q = msg.get("question") if isinstance(msg, dict) else None
        if not isinstance(q, dict):
            continue
        if isinstance(q.get("input"), str):
            q["input"] = mask_text(q["input"])
        for a in q.get("analysis") or ():
            for key in ("processed", "translated"):
                if isinstance(a, dict) and isinstance(a.get(key), str):
                    a[key] = mask_text(a[key])
        words = q.get("important_words")
        if isinstance(words, list):
            q["important_words"] = [mask_text(w) if isinstance(w, str) else w for w in words]


def interactions_of(conv: dict[str, Any]) -> list[int]:
    """Epoch-us times of end-user interactions: questions and answers with a button click."""
    out = []
    for msg in conv.get("messages") or ():
        if msg.get("type") == "question" or (
            msg.get("type") == "answer" and msg.get("button_clicked") is not None
        ):
            out.append(parse_iso_us(msg["time"]))
    return out


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, UTF-8 kept raw (how conversations are sent)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Dataset:
    """Immutable set of conversations in id order, indexed by end-user interaction time."""

    def __init__(self, records: Iterable[Generated]) -> None:
        self.ids = array("q")
        self.created_us = array("q")
        self.last_us = array("q")
        self.payloads: list[bytes] = []
        self._env_names: list[str] = []
        self._envs = array("B")
        self._ix_start = array("q", [0])  # per conversation: slice of _ix_times
        ix_times, owner = array("q"), array("q")
        old = gc.isenabled()
        gc.disable()  # millions of small objects: generational GC passes would dominate
        try:
            for g in records:
                if self.ids and g.conv_id <= self.ids[-1]:
                    raise ValueError(f"conversation ids not increasing at {g.conv_id}")
                if g.environment not in self._env_names:
                    self._env_names.append(g.environment)
                i = len(self.ids)
                self.ids.append(g.conv_id)
                self._envs.append(self._env_names.index(g.environment))
                self.created_us.append(g.created_us)
                self.last_us.append(g.last_us)
                self.payloads.append(g.payload)
                ix_times.extend(sorted(g.interactions))
                owner.extend([i] * len(g.interactions))
                self._ix_start.append(len(ix_times))
            self._ix_times = ix_times
            order = sorted(range(len(ix_times)), key=ix_times.__getitem__)
            self._sorted_t = array("q", (ix_times[k] for k in order))
            self._sorted_conv = array("q", (owner[k] for k in order))
            self._index = {cid: i for i, cid in enumerate(self.ids)}
        finally:
            if old:
                gc.enable()
        self._masked: dict[int, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, spec: DatasetSpec, zone: ZoneInfo | str = "Europe/Oslo") -> Dataset:
        """Generate the synthetic dataset of `spec` (days are local days in `zone`)."""
        return cls(generate(spec, ZoneInfo(zone) if isinstance(zone, str) else zone))

    @classmethod
    def from_file(cls, path: str | Path) -> Dataset:
        """Serve the conversations of a saved export (`.json` or `.json.gz` array)."""
        p = Path(path)
        opener = gzip.open if p.name.endswith(".gz") else open
        with opener(p, "rb") as fh:
            elements = json.load(fh)
        if not isinstance(elements, list):
            raise ValueError(f"{p}: not a JSON array")
        by_id = {r.conv_id: r for r in (_record(c) for c in elements if _is_conversation(c))}
        return cls(by_id[k] for k in sorted(by_id))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def environments(self) -> Sequence[str]:
        return tuple(self._env_names)

    def environment(self, index: int) -> str:
        return self._env_names[self._envs[index]]

    def index_of(self, conv_id: int) -> int | None:
        return self._index.get(conv_id)

    def conversation(self, conv_id: int) -> dict[str, Any]:
        """The full stored conversation (all messages) as a dict."""
        value: dict[str, Any] = json.loads(self.payloads[self._index[conv_id]])
        return value

    def interactions_us(self, index: int) -> Sequence[int]:
        return self._ix_times[self._ix_start[index] : self._ix_start[index + 1]]

    def interaction_span_us(self) -> tuple[int, int]:
        """(first, last) interaction time over the whole dataset."""
        if not self._sorted_t:
            return (0, 0)
        return (self._sorted_t[0], self._sorted_t[-1])

    def select(
        self,
        start_us: int,
        end_us: int,
        conversation_ids: Iterable[int] | None = None,
        environment: str | None = None,
        now_us: int | None = None,
    ) -> list[int]:
        """Indexes (id order) of conversations with an interaction in [start, end) by now."""
        if now_us is not None:
            end_us = min(end_us, now_us + 1)
        if end_us <= start_us:
            return []
        if conversation_ids is not None:
            hits = set()
            for cid in conversation_ids:
                i = self._index.get(cid)
                if i is None:
                    continue
                times = self.interactions_us(i)
                k = bisect_left(times, start_us)
                if k < len(times) and times[k] < end_us:
                    hits.add(i)
        else:
            lo = bisect_left(self._sorted_t, start_us)
            hi = bisect_left(self._sorted_t, end_us, lo)
            hits = set(self._sorted_conv[lo:hi])
        if environment is not None:
            if environment not in self._env_names:
                return []
            env = self._env_names.index(environment)
            envs = self._envs
            return sorted(i for i in hits if envs[i] == env)
        return sorted(hits)

    def matching_ids(
        self,
        start: datetime,
        end: datetime,
        conversation_ids: Iterable[int] | None = None,
        environment: str | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        """Ids the API returns for [start, end) (aware datetimes); now=None means the real clock."""
        now_us = to_us(now) if now is not None else int(time.time() * 1_000_000)
        found = self.select(to_us(start), to_us(end), conversation_ids, environment, now_us)
        return [self.ids[i] for i in found]

    def payload(self, index: int, masked: bool = False, now_us: int | None = None) -> bytes:
        """The conversation's JSON bytes as the API sends it at server time now."""
        if now_us is not None and self.last_us[index] > now_us:
            conv: dict[str, Any] = json.loads(self.payloads[index])
            kept = [m for m in conv["messages"] if parse_iso_us(m["time"]) <= now_us]
            conv["messages"] = kept
            if kept:
                conv["time"]["last_message_created"] = kept[-1]["time"]
            if masked:
                mask_conversation(conv)
            return dumps(conv)
        if not masked:
            return self.payloads[index]
        hit = self._masked.get(index)
        if hit is None:
            conv = json.loads(self.payloads[index])
            mask_conversation(conv)
            hit = dumps(conv)
            with self._lock:
                self._masked[index] = hit
        return hit


def _is_conversation(element: Any) -> bool:
    return isinstance(element, dict) and element.get("type") == "conversation"


def _record(conv: dict[str, Any]) -> Generated:
    msgs = conv.get("messages") or []
    times = [parse_iso_us(m["time"]) for m in msgs if isinstance(m, dict) and "time" in m]
    created = parse_iso_us(conv["time"]["created"])
    return Generated(
        conv_id=int(conv["id"]),
        environment=str(conv.get("environment", "live")),
        created_us=created,
        last_us=max(times, default=created),
        interactions=interactions_of(conv),
        payload=dumps(conv),
    )
