"""The run lock on a SQLite warehouse: a file lock, one holder at a time, in this process too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from etl.errors import LockedError
from etl.load.engine import make_engine
from etl.load.lock import RunLock

_OTHER_PROCESS = """
import sys
from etl.errors import LockedError
from etl.load.engine import make_engine
from etl.load.lock import RunLock
try:
    RunLock(make_engine(sys.argv[1]), "key").acquire()
except LockedError:
    sys.exit(6)
"""


def _other_process_gets_it(url: str) -> bool:
    proc = subprocess.run([sys.executable, "-c", _OTHER_PROCESS, url], check=False, timeout=60)
    assert proc.returncode in (0, 6)
    return proc.returncode == 0


def test_a_second_holder_in_the_same_process_is_refused(tmp_path: Path) -> None:
    """A POSIX record lock belongs to the process: a second RunLock of the same file here was
    granted it, and releasing either one let another process in while the first still ran."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    first, second = RunLock(make_engine(url), "key"), RunLock(make_engine(url), "key")
    first.acquire()
    try:
        with pytest.raises(LockedError):
            second.acquire()
        second.release()  # holds nothing: lets nothing go
        assert not _other_process_gets_it(url)
    finally:
        first.release()
    second.acquire()  # free again once the first let go
    second.release()
    assert _other_process_gets_it(url)
