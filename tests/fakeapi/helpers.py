"""Shared helpers for the simulator tests: constants and export calls over real HTTP."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import requests

from etl.fakeapi import DatasetSpec, FakeApi

SEED_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "seed-example-export.json"
TOKEN = "sim-token"
SPEC = DatasetSpec(seed=1, start=date(2024, 3, 25), days=7, per_day=50)


def export(
    api: FakeApi,
    body: Any,
    token: str | None = TOKEN,
    encoding: str = "identity",
    timeout: float = 30,
) -> requests.Response:
    """POST an export request (body: dict sent as JSON, or raw bytes)."""
    headers = {"Accept-Encoding": encoding, "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else None
    return requests.post(
        api.url + "/api/export/v3",
        json=None if data is not None else body,
        data=data,
        headers=headers,
        timeout=timeout,
    )


def export_ok(api: FakeApi, body: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Export and parse; asserts status 200 and a well-formed array."""
    r = export(api, body, **kwargs)
    assert r.status_code == 200, r.text
    elements: list[dict[str, Any]] = r.json()
    assert elements[0]["type"] == "query_info"
    assert elements[-1]["type"] == "post_query_info"
    return elements


def conversations(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in elements if e["type"] == "conversation"]
