"""Running the real `etl` command in a subprocess against a simulator and a test warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import SIM_TOKEN, TestWarehouse


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def write_config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """A TOML file from nested dicts; retries are fast by default so tests stay quick."""
    sections.setdefault("retry", {"initial_wait": 0.05, "max_wait": 5, "max_attempts": 3})
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
    path = tmp_path / "etl-test.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def etl(
    *args: str,
    wh: TestWarehouse,
    api: Any = None,
    config: Path | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = False,
) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update(wh.env())
    if api is not None:
        env["ETL_API_URL"] = api.url
        env["ETL_API_TOKEN"] = SIM_TOKEN
    env.update(extra_env or {})
    command = [sys.executable, "-m", "etl"]
    if config is not None:
        command += ["--config", str(config)]
    proc = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and result.code != 0:
        raise AssertionError(f"etl {' '.join(args)} exited {result.code}:\n{result.output}")
    return result
