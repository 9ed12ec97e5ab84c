"""Running `etl fake-api` as a separate process, for the demo, memory tests and benchmarks."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

_MARKER = "fake-api listening on "
_TAIL_LINES = 40


class SimulatorDidNotStart(RuntimeError):
    """`etl fake-api` exited, or did not say where it listens in time."""


@contextmanager
def fake_api_process(
    *args: str,
    token: str,
    env: Mapping[str, str] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[str]:
    """Start the simulator with `args` on an ephemeral loopback port; yield its base URL.

    The token goes through the environment, never the command line (it would show in `ps`).
    `env` replaces this process's environment (default: inherited). The simulator's output is
    read continuously, so it can never block on a full pipe, and its last lines are quoted when
    it fails to start (`start_timeout` seconds: serving a large saved file takes a while). The
    process is in its own memory space, so a client's RSS can be measured alone.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", "fake-api", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**(os.environ if env is None else env), "FAKE_API_TOKEN": token},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    listening = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            if not listening.is_set():
                lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        yield _wait_for_url(process, lines, tail, listening, start_timeout)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(
    process: subprocess.Popen[str],
    lines: queue.Queue[str | None],
    tail: deque[str],
    listening: threading.Event,
    timeout: float,
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise SimulatorDidNotStart(
                f"etl fake-api did not start within {timeout:.0f} s:\n" + "\n".join(tail)
            ) from None
        if line is None:
            code = process.wait()
            raise SimulatorDidNotStart(
                f"etl fake-api exited (status {code}) before listening:\n" + "\n".join(tail)
            )
        if _MARKER in line:
            listening.set()
            return line.split(_MARKER, 1)[1].strip()
