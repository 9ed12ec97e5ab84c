"""etl.compiled: when the C accelerators are used, and when the Python code runs instead."""

from __future__ import annotations

import logging

import pytest

from etl import compiled
from tests.conftest import needs_accelerator

_built = compiled.accelerator("etl.load._ccopy", abi=2) is not None


@needs_accelerator(_built)
def test_a_module_built_from_older_sources_is_not_used_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="etl"):
        # As if the checkout expected a newer _ccopy than the one built (git pull, no rebuild).
        assert compiled.accelerator("etl.load._ccopy", abi=3) is None
        assert compiled.accelerator("etl.load._ccopy", abi=3) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per module, not per call
    assert "etl.load._ccopy" in warnings[0] and "make install" in warnings[0]
    assert compiled.accelerator("etl.load._ccopy", abi=2) is not None


def test_etl_pure_python_and_missing_modules_mean_python(monkeypatch: pytest.MonkeyPatch) -> None:
    assert compiled.accelerator("etl.load._no_such_extension") is None
    monkeypatch.setenv("ETL_PURE_PYTHON", "1")
    assert compiled.accelerator("etl.load._ccopy", abi=2) is None
