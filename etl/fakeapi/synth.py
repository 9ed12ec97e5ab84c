"""Deterministic synthetic dataset: which conversations exist, when, and in which environment."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from etl.fakeapi import vocab
from etl.fakeapi.render import HOUR_US, USER_INFO_J, B, Builder, j
from etl.fakeapi.timefmt import US_PER_S, iso_us, local_midnight_us, offset_change_in

MINUS_FIVE = timezone(timedelta(hours=-5))
_QUALITY_J = tuple(j(q) for q in vocab.QUALITY_LABELS)
_ENV_J = {e: j(e) for e in ("live", "test", "staging")}


@dataclass(frozen=True)
class DatasetSpec:
    """What synthetic dataset to generate; the same spec always yields the same bytes."""

    seed: int = 1
    start: date = date(2024, 3, 25)
    days: int = 7
    per_day: int = 50
    environments: tuple[str, ...] = ("live", "test")
    first_environment_share: float = 0.9  # the rest is spread evenly over the other environments
    messages_per_conversation: int = 7  # mean; 7 gives ~5 KB conversations, 2 gives ~1.5 KB
    first_conversation_id: int = 1_000_001
    first_message_id: int = 50_000_001


@dataclass(slots=True)
class Generated:
    """One generated conversation (compact JSON bytes) and the facts the index needs."""

    conv_id: int
    environment: str
    created_us: int
    last_us: int
    interactions: list[int]
    payload: bytes


@dataclass(slots=True)
class _Plan:
    created_us: int
    style: str  # normal | midnight | multiday | dst | silent
    jumps: list[tuple[int, int, int]]  # (at message index, min absolute us, add us)


def _plans(rng: random.Random, spec: DatasetSpec, day: date, zone: ZoneInfo) -> list[_Plan]:
    start = local_midnight_us(day.year, day.month, day.day, zone)
    nxt = day + timedelta(days=1)
    end = local_midnight_us(nxt.year, nxt.month, nxt.day, zone)
    n = spec.per_day
    change = offset_change_in(start, end, zone)
    specials = ["midnight"] * (max(1, n // 25) if n >= 4 else 0)
    specials += ["multiday"] * (n // 60 + (1 if n >= 10 else 0))
    specials += ["dst"] * (min(3, n // 2) if change is not None else 0)
    specials += ["silent"] * (n // 40)
    styles = specials[:n] + ["normal"] * max(0, n - len(specials))
    plans = []
    for style in styles:
        if style == "midnight":
            created = end - rng.randint(60, 900) * US_PER_S
            jumps = [(4, end + rng.randint(1, 600) * US_PER_S, 0)]
        elif style == "dst" and change is not None:
            created = change - rng.randint(60, 900) * US_PER_S
            jumps = [(4, change + rng.randint(1, 600) * US_PER_S, 0)]
        else:
            created = start + int(rng.triangular(0.0, 1.0, 0.55) * (end - start - 60 * US_PER_S))
            jumps = []
            if style == "multiday":
                jumps = [(4, 0, rng.randint(20, 60) * HOUR_US)]
                if rng.random() < 0.5:
                    jumps.append((8, 0, rng.randint(20, 50) * HOUR_US))
        plans.append(_Plan(created, style, jumps))
    plans.sort(key=lambda p: p.created_us)
    return plans


def _conversation(
    rng: random.Random, spec: DatasetSpec, conv_id: int, msg_id: int, plan: _Plan, zone: ZoneInfo
) -> tuple[Generated, int]:
    r = rng.random()
    tz: tzinfo = zone if plan.style == "dst" or r < 0.88 else UTC if r < 0.95 else MINUS_FIVE
    envs = spec.environments
    env = envs[0]
    if len(envs) > 1 and rng.random() >= spec.first_environment_share:
        env = rng.choice(envs[1:])
    modern = rng.random() < 0.85  # older conversations lack the changelog fields
    b = Builder(rng, msg_id, plan.created_us, plan.jumps, tz, sessions=modern)
    mean = max(2, spec.messages_per_conversation)
    b.run(max(2, round(rng.gauss(mean, mean * 0.3))), plan.style == "silent")
    env_j = _ENV_J.get(env) or j(env)
    s = (
        f'{{"type":"conversation","id":{conv_id},"reference":"{rng.getrandbits(128):032x}",'
        f'"environment":{env_j},"time":{{"created":"{iso_us(plan.created_us, tz)}",'
        f'"last_message_created":"{b.last_ts}"}},"reviewed":{B[rng.random() < 0.1]}'
    )
    if modern:
        s += f',"quality_label":{rng.choice(_QUALITY_J)}'
        if rng.random() < 0.6:
            ident = "null" if rng.random() < 0.2 else f'"user-{rng.randint(1, 99999)}@example.com"'
            s += f',"authentication_identifier":{ident}'
        if rng.random() < 0.5:
            s += f',"user_information":{rng.choice(USER_INFO_J)}'
    if rng.random() < 0.05:
        s += ',"x_channel":{"name":"web","build":3,"meta":{"ab":["B",2]}}'
    s += f',"messages":[{",".join(b.msgs)}]}}'
    gen = Generated(conv_id, env, plan.created_us, b.t, b.interactions, s.encode())
    return gen, b.msg_id


def generate(spec: DatasetSpec, zone: ZoneInfo) -> Iterator[Generated]:
    """Yield the dataset's conversations in id order (ids increase with creation time)."""
    conv_id, msg_id = spec.first_conversation_id, spec.first_message_id
    for d in range(spec.days):
        day = spec.start + timedelta(days=d)
        rng = random.Random(spec.seed * 1_000_003 + day.toordinal())
        for plan in _plans(rng, spec, day, zone):
            gen, msg_id = _conversation(rng, spec, conv_id, msg_id, plan, zone)
            conv_id += 1
            yield gen
