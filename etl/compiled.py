"""The compiled accelerators: one rule, for every stage, for whether they are used."""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger("etl")
_warned: set[str] = set()


def accelerator(name: str, abi: int = 1) -> ModuleType | None:
    """The compiled module `name` (e.g. "etl.load._ccopy"), or None to use the Python code.

    None when the install had no C compiler (the extensions are optional), when
    ETL_PURE_PYTHON is set (for comparison or debugging: the results are identical), or when
    the module was built from older sources than the Python code calling it: a C file whose
    interface changes bumps its ABI_VERSION (no constant reads as 1) and its callers' `abi`,
    so that a checkout updated without `make install` runs correctly, only slower.
    """
    if os.environ.get("ETL_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    if getattr(module, "ABI_VERSION", 1) != abi:
        if name not in _warned:
            _warned.add(name)
            log.warning(
                "the compiled %s was built from older sources; using the slower Python code "
                "until `make install` (or `pip install -e .`) rebuilds it",
                name,
            )
        return None
    return module
