"""The compiled accelerators: one rule, for every stage, for whether they are used."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def accelerator(name: str) -> ModuleType | None:
    """The compiled module `name` (e.g. "etl.load._ccopy"), or None to use the Python code.

    None when the install had no C compiler (the extensions are optional) or when
    ETL_PURE_PYTHON is set (for comparison or debugging: the results are identical).
    """
    if os.environ.get("ETL_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
