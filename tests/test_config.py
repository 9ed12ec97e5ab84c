"""Config resolution: precedence, validation messages naming the key and the file, secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from etl.config import load_settings
from etl.errors import ConfigError
from etl.secrets import Secret, scrub


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etl.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    s = load_settings(None, env={})
    assert s.warehouse.url == "sqlite:///warehouse.db"
    assert s.pipeline.window == timedelta(days=1)
    assert s.pipeline.lag == timedelta(hours=2)
    assert s.api.token is None
    assert s.pipeline.workers == 1 and s.api.max_concurrency is None
    assert s.pipeline.claim_timeout == timedelta(minutes=10)


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[warehouse]\nurl = "sqlite:///file.db"\n[pipeline]\nwindow = "6h"\n')
    assert load_settings(path, env={}).warehouse.url == "sqlite:///file.db"
    env = {"ETL_DATABASE_URL": "sqlite:///env.db"}
    assert load_settings(path, env=env).warehouse.url == "sqlite:///env.db"
    flags = {"warehouse.url": "sqlite:///flag.db", "pipeline.window": "1h"}
    s = load_settings(path, env=env, overrides=flags)
    assert s.warehouse.url == "sqlite:///flag.db"
    assert s.pipeline.window == timedelta(hours=1)


def test_shipped_config_files_are_valid() -> None:
    root = Path(__file__).parents[1] / "config"
    load_settings(root / "etl.toml", env={})
    s = load_settings(root / "example.toml", env={"ETL_OAUTH_CLIENT_SECRET": "s3cr3t-value"})
    assert s.api.oauth is not None and s.api.oauth.scope == "export:v3"
    assert s.pipeline.start == datetime(2024, 1, 1, tzinfo=s.pipeline.timezone)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[pipeline]\nwindoww = '1d'\n", "unknown key 'pipeline.windoww'"),
        ("[pipline]\nwindow = '1d'\n", "unknown key 'pipline'"),
        ("[pipeline]\nstart = 'yesterday'\n", "pipeline.start"),
        ("[pipeline]\nwindow = '0h'\n", "pipeline.window"),
        ("[pipeline]\ntimezone = 'Mars/Base'\n", "pipeline.timezone"),
        ("[reporting]\ntimezone = 'Mars/Base'\n", "reporting.timezone"),
        ("[api]\nurl = 'ftp://x'\n", "api.url"),
        ("[api]\ntoken = 'abc'\n", "secrets are never read from config files"),
        ("[api]\nverify = false\n", "cannot be turned off"),
        ("[warehouse]\nurl = 'mysql://x/y'\n", "only sqlite and postgresql"),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts"),
        ("[pipeline]\nworkers = 0\n", "pipeline.workers in"),
        ("[pipeline]\nclaim_timeout = '0s'\n", "pipeline.claim_timeout in"),
        ("[api]\nmax_concurrency = 'many'\n", "api.max_concurrency in"),
        ("not toml [", "not valid TOML"),
        # A bare number is not read as seconds: 400 meant as days would prune nearly all.
        ("[warehouse]\nretention = 400\n", "warehouse.retention in"),
        ("[pipeline]\nwindow = 1\n", "pipeline.window in"),
        ("[pipeline]\nlag = 7200\n", "pipeline.lag in"),
        ("[retry]\nmax_total_wait = 600\n", "retry.max_total_wait in"),
        # Values of the wrong type name their key instead of failing as a bug later.
        ("[warehouse]\nkeep_raw = 'false'\n", "warehouse.keep_raw in"),
        ("[warehouse]\nschema = 5\n", "warehouse.schema in"),
        ("[pipeline]\ntimezone = 5\n", "pipeline.timezone in"),
        ("[pipeline]\nstart = 5\n", "pipeline.start in"),
        ("pipeline = 3\n", "pipeline in"),
        ("[api]\nfilters = 'x'\n", "api.filters in"),
        ("[api]\noauth = 'x'\n", "api.oauth in"),
        ("[warehouse]\nurl = 'postgresql://u:pw-in-file@h/db'\n", "secrets are never read"),
        ("[warehouse]\nurl = 'postgresql://u@h/db?password=pw-in-file'\n", "holds a password"),
    ],
)
def test_invalid_config_names_key_and_file(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert needle in str(info.value)
    if "TOML" not in needle and "unknown" not in needle and "secrets" not in needle:
        assert str(path) in str(info.value)


def test_missing_token_is_a_config_error() -> None:
    s = load_settings(None, env={"ETL_API_URL": "http://127.0.0.1:1"})
    with pytest.raises(ConfigError, match="ETL_API_TOKEN"):
        s.require_api()


def test_token_from_env_and_file_is_redacted(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-123456\n")
    s = load_settings(None, env={"ETL_API_URL": "http://h", "ETL_API_TOKEN_FILE": str(token_file)})
    assert s.api.token is not None and s.api.token.reveal() == "file-token-123456"
    assert "file-token-123456" not in repr(s)
    s2 = load_settings(None, env={"ETL_API_URL": "http://h", "ETL_API_TOKEN": "env-token-abcdef"})
    assert s2.api.token == Secret("env-token-abcdef")
    assert "env-token-abcdef" not in repr(s2) and "env-token-abcdef" not in str(s2)
    assert scrub("Bearer env-token-abcdef") == "Bearer **********"


def test_database_password_is_hidden_in_display_url() -> None:
    s = load_settings(None, env={"ETL_DATABASE_URL": "postgresql://u:hunter2pw@db/x"})
    assert "hunter2pw" not in s.warehouse.display_url
    assert s.warehouse.url.startswith("postgresql+psycopg://")
    assert scrub("password is hunter2pw") == "password is **********"


def test_a_password_with_an_at_sign_not_url_encoded_is_refused_unquoted() -> None:
    url = "postgresql+psycopg://owner:Sup3r@Secret99@127.0.0.1:5432/db"
    with pytest.raises(ConfigError) as raised:
        load_settings(None, env={"ETL_DATABASE_URL": url})
    message = str(raised.value)
    assert "%40" in message and "Sup3r" not in message and "Secret99" not in message
    assert "Secret99" not in scrub("could not resolve host 'Secret99@127.0.0.1'")


def test_a_password_in_the_query_string_is_hidden_too() -> None:
    url = "postgresql://u@db/x?password=QueryPw4321&sslmode=require"
    s = load_settings(None, env={"ETL_DATABASE_URL": url})
    assert "QueryPw4321" not in s.warehouse.display_url
    assert s.warehouse.display_url.endswith("?password=***&sslmode=require")
    assert "QueryPw4321" in s.warehouse.url  # libpq still gets it
    assert scrub("connecting with QueryPw4321") == "connecting with **********"


def test_a_password_in_the_config_files_url_is_refused_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "[warehouse]\nurl = 'postgresql://u:FilePw98765@db/x'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "FilePw98765" not in str(info.value)
    assert "ETL_DATABASE_URL" in str(info.value)


def test_a_schema_on_sqlite_is_refused_when_the_config_is_read() -> None:
    env = {"ETL_DATABASE_URL": "sqlite:///x.db", "ETL_DATABASE_SCHEMA": "marts"}
    with pytest.raises(ConfigError, match=r"warehouse\.schema .*ETL_DATABASE_SCHEMA.*PostgreSQL"):
        load_settings(None, env=env)


def test_a_database_url_with_a_bad_port_is_a_config_error() -> None:
    env = {"ETL_DATABASE_URL": "postgresql://u:pw@h:notaport/db"}
    with pytest.raises(ConfigError, match="ETL_DATABASE_URL"):
        load_settings(None, env=env)


def test_an_oauth_token_url_error_names_its_own_key() -> None:
    env = {
        "ETL_OAUTH_TOKEN_URL": "ftp://x",
        "ETL_OAUTH_CLIENT_ID": "client",
        "ETL_OAUTH_CLIENT_SECRET": "client-secret-1",
    }
    with pytest.raises(ConfigError, match=r"api\.oauth\.token_url .*ETL_OAUTH_TOKEN_URL"):
        load_settings(None, env=env)


def test_a_config_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path, env={})  # a directory
    path = tmp_path / "etl.toml"
    path.write_bytes(b"[pipeline]\nwindow = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path, env={})


def test_toml_booleans_and_dates_are_taken_as_they_are(tmp_path: Path) -> None:
    path = write(tmp_path, "[warehouse]\nkeep_raw = true\n[pipeline]\nstart = 2024-01-01\n")
    s = load_settings(path, env={})
    assert s.warehouse.keep_raw is True
    assert s.pipeline.start == datetime(2024, 1, 1, tzinfo=UTC)


def test_missing_secret_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(None, env={"ETL_API_TOKEN_FILE": str(tmp_path / "nope")})


def test_start_in_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, "[pipeline]\nstart = '2024-03-31'\ntimezone = 'Europe/Oslo'\n")
    s = load_settings(path, env={})
    assert s.pipeline.start is not None
    assert s.pipeline.start.astimezone(UTC) == datetime(2024, 3, 30, 23, 0, tzinfo=UTC)


def test_reporting_zone_defaults_to_the_pipeline_zone(tmp_path: Path) -> None:
    path = tmp_path / "etl.toml"
    path.write_text("[pipeline]\ntimezone = 'Europe/Oslo'\n")
    assert str(load_settings(path, env={}).reporting.timezone) == "Europe/Oslo"
    path.write_text("[pipeline]\ntimezone = 'Europe/Oslo'\n[reporting]\ntimezone = 'UTC'\n")
    assert load_settings(path, env={}).reporting.timezone == UTC


def test_a_bad_flag_is_blamed_on_the_command_line_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[pipeline]\nwindow = '1d'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}, overrides={"pipeline.window": "0h"})
    assert "pipeline.window in a command-line option: must be longer than zero" in str(info.value)
    assert str(path) not in str(info.value)
    path = write(tmp_path, "[pipeline]\nwindow = '0h'\n")
    with pytest.raises(ConfigError, match=f"pipeline.window in {path}"):
        load_settings(path, env={}, overrides={"pipeline.workers": 2})


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [
        ("env", " \t", "ETL_API_TOKEN is empty"),
        ("file", "", "the secret in"),
        ("file", "tok-first-line-1234\ntok-second-line-5678\n", "a line break at position 20"),
        ("env", "tok-caf\u00e9-1234", "character U+00E9 at position 8"),
        ("env", "tok with-a-space-1234", "character U+0020 at position 4"),
    ],
)
def test_a_token_that_cannot_be_sent_is_refused_by_name_unquoted(
    tmp_path: Path, where: str, value: str, says: str
) -> None:
    env = {"ETL_API_URL": "http://h"}
    if where == "env":
        env["ETL_API_TOKEN"] = value
    else:
        (tmp_path / "token").write_text(value)
        env["ETL_API_TOKEN_FILE"] = str(tmp_path / "token")
    with pytest.raises(ConfigError) as raised:
        load_settings(None, env=env)
    assert says in str(raised.value)
    assert not any(len(part) > 4 and part in str(raised.value) for part in value.split())


def test_a_token_file_saved_with_a_byte_order_mark_loads_without_it(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\ufefftok-from-notepad-1234\r\n", encoding="utf-8")
    settings = load_settings(
        None, env={"ETL_API_URL": "http://h", "ETL_API_TOKEN_FILE": str(tmp_path / "token")}
    )
    assert settings.api.token is not None
    assert settings.api.token.reveal() == "tok-from-notepad-1234"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://svc:MyB4sicPassw0rd@site.example", "credentials in the URL are not allowed"),
        ("htps://svc:MyB4sicPassw0rd@site.example", "is not an http(s) URL"),
        ("https://[::1", "is not an http(s) URL"),
        ("https://site.example:99999", "is not an http(s) URL"),
    ],
)
def test_a_bad_api_url_from_the_environment_is_named_so_and_not_quoted(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, env={"ETL_API_URL": url})
    message = str(raised.value)
    assert says in message and "the environment (ETL_API_URL)" in message
    assert "MyB4sic" not in message


def test_a_duration_too_long_to_hold_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "etl.toml"
    path.write_text('[pipeline]\nwindow = "1000000000d"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(path, env={})
    assert "pipeline.window" in str(raised.value)


def test_an_oauth_scope_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "etl.toml"
    path.write_text(
        '[api]\nurl = "https://h.example"\n[api.oauth]\ntoken_url = "https://h.example/t"\n'
        'client_id = "c"\nscope = ["export:v3"]\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(path, env={"ETL_OAUTH_CLIENT_SECRET": "client-secret-1234"})
    assert "api.oauth.scope" in str(raised.value) and "is not text" in str(raised.value)


def test_an_oauth_client_secret_beyond_latin_1_is_refused_by_name() -> None:
    """HTTP basic authentication, as requests writes it, is Latin-1: 'é' goes, '€' cannot."""
    env = {
        "ETL_API_URL": "https://h.example",
        "ETL_OAUTH_TOKEN_URL": "https://h.example/t",
        "ETL_OAUTH_CLIENT_ID": "c",
    }
    assert load_settings(None, env={**env, "ETL_OAUTH_CLIENT_SECRET": "caf\u00e9 secret"}).api
    with pytest.raises(ConfigError) as raised:
        load_settings(None, env={**env, "ETL_OAUTH_CLIENT_SECRET": "secret-\u20acuro"})
    assert "ETL_OAUTH_CLIENT_SECRET holds character U+20AC at position 8" in str(raised.value)
