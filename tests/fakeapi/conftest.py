"""Fixtures for the export simulator tests: a shared dataset and a server factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from etl.fakeapi import Dataset, FakeApi, FakeApiOptions

from .helpers import SPEC

MakeApi = Callable[..., FakeApi]


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    """The default week (includes the 2024-03-31 DST switch in Europe/Oslo), built once."""
    return Dataset.build(SPEC, "Europe/Oslo")


@pytest.fixture
def make_api(dataset: Dataset) -> Iterator[MakeApi]:
    """Start servers with FakeApiOptions overrides (default: the shared dataset); stop after."""
    started: list[FakeApi] = []

    def make(**overrides: Any) -> FakeApi:
        opts = replace(FakeApiOptions(dataset=dataset), **overrides)
        api = FakeApi(opts).start()
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def api(make_api: MakeApi) -> FakeApi:
    return make_api()
