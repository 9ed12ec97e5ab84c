"""Run one command as a fresh child process and measure its wall time and peak RSS.

Why a launcher: on Linux, a child's `ru_maxrss` (from `wait4`) starts from the high-water mark
of the process it was forked from: `exec` folds the old address space's peak into the child's
`maxrss`. A child spawned straight from the driver (which holds results, psycopg, ...) would
report at least the driver's own peak. So the driver starts this file as a tiny launcher
(`python -I -S measure.py RESULT -- argv...`, about 8 MB, importing nothing but `os`, `sys` and
`time`), which resets its own high-water mark (`/proc/self/clear_refs`), spawns the measured
command, and reads the command's own `ru_maxrss` with `os.wait4`. Any Python program's peak is
above the launcher's, so the floor never shows.

The launcher half of this file must stay import-light: everything else is imported lazily by
`run_measured`, which the driver calls.
"""

from __future__ import annotations

import os
import sys
import time

# Fields the launcher writes to its result file, one `name=value` per line.
_FIELDS = ("returncode", "wall_s", "maxrss_kb", "user_s", "sys_s")


def _launch(result_path: str, argv: list[str]) -> int:
    """Launcher mode: spawn `argv`, wait for it, write the measurements to `result_path`."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # reset this process's VmHWM
            fh.write("5")
    except OSError:
        pass  # not Linux, or not allowed: the floor is then the launcher's startup peak
    start = time.perf_counter()
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ)
    except OSError as exc:
        sys.stderr.write(f"measure: cannot start {argv[0]}: {exc}\n")
        return 127
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, belt and braces
            continue
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    values = (code, wall, usage.ru_maxrss, usage.ru_utime, usage.ru_stime)
    with open(result_path, "w") as fh:
        fh.write("".join(f"{name}={value}\n" for name, value in zip(_FIELDS, values, strict=True)))
    return code if 0 <= code < 256 else 128 + (-code if code < 0 else 0)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.stderr.write("usage: python -I -S measure.py RESULT_FILE -- COMMAND [ARGS...]\n")
        sys.exit(2)
    sys.exit(_launch(sys.argv[1], sys.argv[3:]))


# ---- driver side -------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402 - the launcher above must not import these
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence
    from pathlib import Path


@dataclass
class Measurement:
    """One measured run of a command."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    user_s: float
    sys_s: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    # The 1-minute load average as the run started: it includes the bench's own previous runs,
    # so only its jumps say that other work competed.
    loadavg_before: float = 0.0
    # CPU the database server's processes used during the run (user + system), when the driver
    # can see them (bench.run.Postgres.server_cpu): set by the driver, not by run_measured.
    server_cpu_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def stderr_tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr.rstrip().splitlines()[-lines:])


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
) -> Measurement:
    """Run `argv` to completion in a fresh process; wall time and peak RSS of that process.

    stdout and stderr are captured in full (via temporary files, so a chatty child cannot block
    on a pipe). On timeout the whole process group is terminated and `timed_out` is set.
    """
    import subprocess
    import tempfile

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        result_path = os.path.join(tmp, "result")
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        launcher = [sys.executable, "-I", "-S", os.path.abspath(__file__), result_path, "--"]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [*launcher, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # its own process group: a timeout kills it all
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop_group(proc)
            except BaseException:  # Ctrl-C in the driver: the child is in its own session
                _stop_group(proc)
                raise
        stdout = _read_text(out_path)
        stderr = _read_text(err_path)
        values = _read_result(result_path)
    if values is None:
        return Measurement(
            list(argv),
            proc.returncode if not timed_out else -9,
            float("nan"),
            float("nan"),
            float("nan"),
            float("nan"),
            stdout,
            stderr,
            timed_out,
            load,
        )
    return Measurement(
        argv=list(argv),
        returncode=int(values["returncode"]) if not timed_out else -9,
        wall_s=float(values["wall_s"]),
        peak_rss_mb=int(values["maxrss_kb"]) / 1024.0,  # Linux reports KiB
        user_s=float(values["user_s"]),
        sys_s=float(values["sys_s"]),
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        loadavg_before=load,
    )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the launcher's process group (its id is the launcher's pid), then SIGKILL."""
    import signal
    import subprocess

    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8", "replace")


def _read_result(path: str) -> dict[str, str] | None:
    try:
        with open(path) as fh:
            pairs = (line.strip().split("=", 1) for line in fh if "=" in line)
            values = {k: v for k, v in pairs}
    except FileNotFoundError:
        return None
    return values if all(name in values for name in _FIELDS) else None
