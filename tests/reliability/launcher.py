"""Start `etl` processes fast: fork them from a parent that has already imported the project.

`python -m etl` spends well over a second importing SQLAlchemy, Alembic, requests and the
project before it does anything; the reliability suite starts more than a hundred of them. The
launcher process imports all of that once, then for each command forks a child that sets its
own environment, working directory and standard streams and calls `etl.cli.main(argv)`, the
function the `etl` console script calls. Each command is a separate process with its own pid,
exit code, signal handling, sockets and locks: killing it is killing an `etl` run.

Set ETL_RELIABILITY_SUBPROCESS=1 to run every command as `python -m etl` instead (slower).

Protocol (JSON lines): the test sends {"id", "argv", "env", "cwd", "out", "err"}; the launcher
answers {"id", "pid"} after the fork and {"id", "code", "maxrss_kib"} when the child exits
(code -N: killed by signal N; maxrss_kib: the child's peak resident memory, from wait4).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


# -- the launcher process ------------------------------------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the requested `etl` process, never return."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((stdin, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.argv = ["etl", *request["argv"]]
        from etl.cli import main

        main(request["argv"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, as the interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(code))


def serve() -> None:
    """Import everything a command needs, then fork one child per request."""
    import etl.cli
    import etl.extract.files
    import etl.load.lock
    import etl.load.migrate
    import etl.pipeline.runner
    import etl.pipeline.status  # noqa: F401

    children: dict[int, int] = {}  # pid -> request id
    control = sys.stdout

    def say(message: dict[str, Any]) -> None:
        control.write(json.dumps(message) + "\n")
        control.flush()

    say({"ready": True})
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.01)
        if readable:
            data = os.read(0, 65536)
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children[pid] = request["id"]
                say({"id": request["id"], "pid": pid})
        while children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(status)
            say({"id": children.pop(pid), "code": code, "maxrss_kib": usage.ru_maxrss})


# -- the test side -------------------------------------------------------------------------------


class Child:
    """One `etl` process: its pid, output files and exit code."""

    def __init__(self, launcher: Launcher | None, ident: int, out: Path, err: Path) -> None:
        self._launcher = launcher
        self.id = ident
        self.out = out
        self.err = err
        self.pid = 0
        self.code: int | None = None
        self.maxrss_kib = 0  # peak resident set size, from wait4 (not with subprocess mode)
        self._proc: subprocess.Popen[bytes] | None = None

    def send_signal(self, signum: int) -> None:
        if self.code is None:
            os.kill(self.pid, signum)

    def poll(self) -> int | None:
        if self._proc is not None:
            self.code = self._proc.poll()
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        if self._proc is not None:
            self.code = self._proc.wait(timeout)
            return self.code
        assert self._launcher is not None
        return self._launcher.wait(self, timeout)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


class Launcher:
    """The test side: start `etl` children and learn their exit codes."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="etl-launcher-"))
        self._next = 0
        self._lock = threading.Condition()
        self._children: dict[int, Child] = {}
        self._subprocess = os.environ.get("ETL_RELIABILITY_SUBPROCESS") == "1"
        self._proc: subprocess.Popen[str] | None = None
        if not self._subprocess:
            self._proc = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            assert self._proc.stdout is not None
            ready = self._proc.stdout.readline()
            if not ready:
                raise RuntimeError("the etl launcher did not start")
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            message = json.loads(line)
            with self._lock:
                child = self._children[message["id"]]
                if "pid" in message:
                    child.pid = message["pid"]
                if "code" in message:
                    child.maxrss_kib = message["maxrss_kib"]
                    child.code = message["code"]
                self._lock.notify_all()

    def start(self, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Child:
        with self._lock:
            self._next += 1
            ident = self._next
        out, err = self._dir / f"{ident}.out", self._dir / f"{ident}.err"
        out.touch()
        err.touch()
        if self._subprocess:
            child = Child(None, ident, out, err)
            with out.open("wb") as o, err.open("wb") as e:
                child._proc = subprocess.Popen(
                    [sys.executable, "-m", "etl", *argv], env=env, cwd=cwd, stdout=o, stderr=e
                )
            child.pid = child._proc.pid
            return child
        child = Child(self, ident, out, err)
        request = {
            "id": ident,
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
        }
        with self._lock:
            self._children[ident] = child
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            if not self._lock.wait_for(lambda: child.pid != 0, timeout=30):
                raise RuntimeError("the etl launcher did not fork")
        return child

    def wait(self, child: Child, timeout: float | None) -> int:
        with self._lock:
            if not self._lock.wait_for(lambda: child.code is not None, timeout=timeout):
                raise subprocess.TimeoutExpired(["etl"], timeout or 0)
            assert child.code is not None
            return child.code

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)


if __name__ == "__main__":
    sys.path[0] = str(ROOT)  # not this directory: nothing here may shadow a module
    serve()
