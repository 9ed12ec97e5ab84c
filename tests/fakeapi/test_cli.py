"""The `fake-api` command: --help documents every flag, --save writes an export, serving."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import requests
from click.testing import CliRunner

from etl.fakeapi import Dataset, DatasetSpec, FakeApiOptions, Faults
from etl.fakeapi.cli import FAULT_FLAGS, fake_api

from .helpers import SEED_FILE


def test_help_documents_every_flag() -> None:
    result = CliRunner().invoke(fake_api, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    out = result.output
    assert set(FAULT_FLAGS) == {f.name for f in fields(Faults)}
    names = [f.name for f in fields(Faults)]
    names += [f.name for f in fields(FakeApiOptions) if f.name not in ("dataset", "faults")]
    names += [f.name for f in fields(DatasetSpec)]
    flags = {opt for p in fake_api.params for opt in p.opts}
    for name in [*names, "save", "no_static_token", "no_oauth"]:
        flag = "--" + name.replace("_", "-")
        assert flag in flags and flag in out, f"{flag} missing"
    for option in fake_api.params:
        assert option.help, f"{option.name} has no help"
    assert "FAKE_API_TOKEN" in out and "FAKE_API_CLIENT_SECRET" in out
    assert "sim-token" not in out and "sim-secret" not in out


def test_save_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "export.json"
    result = CliRunner().invoke(fake_api, ["--save", str(target), "--days", "1", "--per-day", "5"])
    assert result.exit_code == 2, result.output
    assert f"cannot write {target}" in result.output


def test_save_writes_the_whole_export(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("export.json", "export.json.gz"):
        path = tmp_path / name
        args = ["--save", str(path), "--days", "3", "--per-day", "20", "--seed", "5"]
        result = runner.invoke(fake_api, args)
        assert result.exit_code == 0, result.output
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            elements = json.load(fh)
        assert elements[0]["type"] == "query_info" and elements[-1]["type"] == "post_query_info"
        convs = elements[1:-1]
        assert elements[0]["conversations"] == len(convs) == elements[-1]["conversations"]
        dataset = Dataset.build(DatasetSpec(seed=5, days=3, per_day=20))
        live = [i for i in range(len(dataset)) if dataset.environment(i) == "live"]
        with_interactions = [i for i in live if dataset.interactions_us(i)]
        assert [c["id"] for c in convs] == [dataset.ids[i] for i in with_interactions]
        assert convs[0] == dataset.conversation(convs[0]["id"])
    served = Dataset.from_file(tmp_path / "export.json.gz")
    assert len(served) == len(convs)


def test_serves_until_sigterm_and_never_prints_secrets() -> None:
    env = {**os.environ, "FAKE_API_TOKEN": "tok-from-env", "FAKE_API_CLIENT_SECRET": "s3cr3t"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl.fakeapi", "--from-file", str(SEED_FILE), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fake-api listening on http://127.0.0.1:")
        url = line.split()[-1]
        body = {"from": "2021-01-01", "to": "2022-01-01"}
        headers = {"Authorization": "Bearer tok-from-env"}
        r = requests.post(url + "/api/export/v3", json=body, headers=headers, timeout=10)
        assert r.status_code == 200 and len(r.json()) == 3
        form = {"grant_type": "client_credentials", "scope": "export:v3"}
        r = requests.post(
            url + "/oauth/token", data=form, auth=("sim-client", "s3cr3t"), timeout=10
        )
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "tok-from-env" not in out + err and "s3cr3t" not in out + err
