"""The run lock on a SQLite warehouse: a file lock, one holder at a time, in this process too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from etl.errors import LockedError
from etl.load.engine import make_engine
from etl.load.lock import RELEASE_WAIT, RunLock

_OTHER_PROCESS = """
import sys
from etl.errors import LockedError
from etl.load.engine import make_engine
from etl.load.lock import RELEASE_WAIT, RunLock
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


def _server_processes(server: Any) -> list[int]:
    """The postmaster of `server` and its children (backends, background workers)."""
    postmaster = int((server.base / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    found = [postmaster]
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if entry.name.isdigit() and stat[stat.rindex(")") + 2 :].split()[1] == str(postmaster):
            found.append(int(entry.name))
    return found


def test_letting_go_of_the_lock_ends_when_the_server_stops_answering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server stuck on I/O (here: every process stopped) must not keep a failed run from
    exiting: its exit status is what alerts anyone. The lock ends with the connection."""
    from tests import pgserver

    with pgserver.running("frozen") as server:
        engine = make_engine(server.url)
        lock = RunLock(engine, "key")
        lock.acquire()
        frozen = _server_processes(server)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            releasing = threading.Thread(target=lock.release, daemon=True)
            releasing.start()
            releasing.join(RELEASE_WAIT * 6)  # a deadline, not a measurement
            assert not releasing.is_alive(), "release waited for a server that never answers"
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            engine.dispose()
    assert "did not answer within" in caplog.text
