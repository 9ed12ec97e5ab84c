"""The log formatters scrub every registered secret, plain and JSON, from the message and from a
traceback: what `setup_logging` installs is what `etl` writes to stderr."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.config import load_settings
from etl.log import setup_logging
from etl.secrets import Secret

TOKEN = "log-test-token-7f3a9c1e5b"
PASSWORD = "log-test-db-pw-42d8e6"
LONGER = TOKEN + "-rotated"  # a secret holding another: masked whole, not as MASK + "-rotated"
MASK = "**********"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    etl_logger = logging.getLogger("etl")
    saved = (list(root.handlers), root.level, etl_logger.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    etl_logger.setLevel(saved[2])


def log_secrets() -> None:
    """A message with secrets in its format string and its arguments, then a traceback."""
    Secret(TOKEN)
    Secret(LONGER)
    settings = load_settings(
        None, env={"ETL_DATABASE_URL": f"postgresql://etl:{PASSWORD}@db.internal/warehouse"}
    )
    log = logging.getLogger("etl.test_log")
    log.info(f"sending Bearer {TOKEN}")  # the secret in the message itself
    log.warning(
        "connecting to %s with %s, then %s, then %s", settings.warehouse.url, TOKEN, LONGER, TOKEN
    )
    try:
        raise RuntimeError(f"refused: Authorization: Bearer {TOKEN}, password {PASSWORD}")
    except RuntimeError:
        log.exception("the request failed")


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_secrets_are_scrubbed_from_messages_and_tracebacks(
    fmt: str, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(0, fmt)
    log_secrets()
    err = capsys.readouterr().err
    assert TOKEN not in err and PASSWORD not in err and "rotated" not in err, err
    if fmt == "json":
        records = [json.loads(line) for line in err.splitlines()]
        messages = [r["message"] for r in records]
        assert messages[0] == f"sending Bearer {MASK}"
        assert (
            messages[1]
            == f"connecting to postgresql+psycopg://etl:{MASK}@db.internal/warehouse with {MASK}, "
            f"then {MASK}, then {MASK}"
        )
        assert messages[2] == "the request failed"
        exception = records[2]["exception"]
    else:
        lines = err.splitlines()
        assert lines[0].endswith(f"INFO    sending Bearer {MASK}")
        assert lines[1].endswith(
            f"connecting to postgresql+psycopg://etl:{MASK}@db.internal/warehouse with {MASK}, "
            f"then {MASK}, then {MASK}"
        )
        assert lines[2].endswith("ERROR   the request failed")
        exception = "\n".join(lines[3:])
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.rstrip().endswith(
        f"RuntimeError: refused: Authorization: Bearer {MASK}, password {MASK}"
    )


def test_json_scrubs_secrets_with_characters_json_escapes(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = 'log-test-pw-"quoted"-back\\slash'
    Secret(secret)
    setup_logging(0, "json")
    logging.getLogger("etl.test_log").warning("password %s", secret)
    record = json.loads(capsys.readouterr().err)
    assert secret not in record["message"]


def test_an_unexpected_errors_traceback_is_one_json_line_with_json_logs(
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """With -v the traceback of a bug goes with the log, so a scheduler reading JSON lines
    still reads every line."""
    import etl.pipeline.status
    from etl.cli import main

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(etl.pipeline.status, "collect_status", broken)
    monkeypatch.setenv("ETL_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    (tmp_path / "w.db").touch()
    with pytest.raises(SystemExit) as ended:
        main(["--log-format", "json", "-v", "status"])
    assert ended.value.code == 1
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert any("RuntimeError: boom" in line.get("exception", "") for line in lines)
    assert "This is a bug" in lines[-1]["message"]
