"""Running `etl fake-api` as a separate process, for the demo, memory tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_MARKER = "fake-api listening on "


class SimulatorDidNotStart(RuntimeError):
    """`etl fake-api` exited or printed something else instead of its listening line."""


@contextmanager
def fake_api_process(*args: str, token: str) -> Iterator[str]:
    """Start the simulator with `args` on an ephemeral loopback port; yield its base URL.

    The token goes through the environment, never the command line (it would show in `ps`).
    The process is in its own memory space, so a client's RSS can be measured alone.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", "fake-api", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, FAKE_API_TOKEN=token),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(_MARKER):
            raise SimulatorDidNotStart(f"etl fake-api did not start (it printed {line.strip()!r})")
        yield line[len(_MARKER) :].strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
