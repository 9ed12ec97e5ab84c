"""One typed configuration, resolved once: defaults, then the TOML file, then env, then flags."""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from etl import env as env_vars
from etl.errors import ConfigError
from etl.secrets import Secret, register
from etl.windows import parse_duration, parse_instant, parse_zone

DEFAULT_DATABASE_URL = "sqlite:///warehouse.db"
EXPORT_PATH = "/api/export/v3"
SCOPE = "export:v3"


@dataclass(frozen=True)
class OAuthSettings:
    token_url: str
    client_id: str
    client_secret: Secret
    scope: str = SCOPE


@dataclass(frozen=True)
class ApiSettings:
    url: str | None = None
    token: Secret | None = None
    oauth: OAuthSettings | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    max_decompressed_bytes: int = 4 * 1024**3
    ca_bundle: Path | None = None
    # Export requests in flight at once from one process, over all its windows (None: one
    # per window, pipeline.workers); 429s lower it further for a while (etl.extract.courtesy).
    max_concurrency: int | None = None
    # The egress proxy requests to the site go through (None: straight to it), but for the
    # hosts `no_proxy` names (NO_PROXY) and this machine itself.
    proxy: str | None = None
    no_proxy: tuple[str, ...] = ()

    def proxies_for(self, url: str) -> dict[str, str]:
        """The `proxies` of a request to `url`: none for a host reached without the proxy."""
        if self.proxy is None or _bypassed(urlsplit(url).hostname or "", self.no_proxy):
            return {}
        return {"http": self.proxy, "https": self.proxy}

    @property
    def export_url(self) -> str:
        assert self.url is not None
        return self.url.rstrip("/") + EXPORT_PATH


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 5
    max_total_wait: timedelta = timedelta(minutes=10)
    initial_wait: float = 1.0
    max_wait: float = 120.0


@dataclass(frozen=True)
class WarehouseSettings:
    url: str = DEFAULT_DATABASE_URL
    schema: str | None = None
    batch_size: int = 300
    keep_raw: bool = False
    # Conversations whose last message is older than this are pruned (`etl prune`, and at the
    # end of `etl run`); None keeps everything.
    retention: timedelta | None = None

    @property
    def display_url(self) -> str:
        """The URL with any password masked, safe to print."""
        return display_url(self.url)


def display_url(url: str | URL) -> str:
    """A database URL with any password masked, safe to print."""
    parsed = make_url(url)
    if "password" not in parsed.query:
        return parsed.render_as_string(hide_password=True)
    # libpq also takes the password from the query string.
    masked = parsed.update_query_dict({"password": "MASKED"}).render_as_string(hide_password=True)
    return masked.replace("password=MASKED", "password=***")


# pipeline.on_bad_conversation: what a conversation that cannot be loaded does to its window.
FAIL: Final = "fail"  # the window fails and is rolled back (nothing of it is committed)
QUARANTINE: Final = "quarantine"  # it goes whole to etl_rejects; the rest of the window loads
BAD_CONVERSATION_POLICIES: Final = (FAIL, QUARANTINE)

# pipeline.deletes: what a complete window does with the stored conversations its export no
# longer returns (etl.load.loader.WindowLoader.detect_deletes).
IGNORE: Final = "ignore"  # nothing
SOFT: Final = "soft"  # conversations.deleted_at is set; the views leave them out
HARD: Final = "hard"  # removed with their child rows
DELETE_POLICIES: Final = (IGNORE, SOFT, HARD)


@dataclass(frozen=True)
class PipelineSettings:
    start: datetime | None = None
    window: timedelta = timedelta(days=1)
    lag: timedelta = timedelta(hours=2)
    timezone: tzinfo = field(default_factory=lambda: parse_zone("UTC"))
    on_bad_conversation: str = FAIL
    # Windows loaded at once, each on its own connection and in its own transaction.
    workers: int = 1
    # How long a claimed window's holder may go without a heartbeat before another run takes
    # the window over (a holder that died is taken over at once: etl.load.claims).
    claim_timeout: timedelta = timedelta(minutes=10)
    deletes: str = IGNORE

    @property
    def quarantine(self) -> bool:
        return self.on_bad_conversation == QUARANTINE


@dataclass(frozen=True)
class ReportingSettings:
    # The zone of the local dates and hours the metric views group by (conversations.local_date,
    # local_hour). The warehouse records the zone its stored values are for; `etl migrate`
    # recomputes them when this setting changes (etl.load.localtime).
    timezone: tzinfo = field(default_factory=lambda: parse_zone("UTC"))


@dataclass(frozen=True)
class Settings:
    api: ApiSettings = field(default_factory=ApiSettings)
    warehouse: WarehouseSettings = field(default_factory=WarehouseSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    reporting: ReportingSettings = field(default_factory=ReportingSettings)
    source: str = "defaults"  # where the file part came from, for error messages

    def require_api(self) -> ApiSettings:
        """The API settings, checked complete enough to make a request."""
        where = self.source
        if not self.api.url:
            raise ConfigError(f"api.url is not set ({where}): set it in the file or ETL_API_URL")
        if self.api.token is None and self.api.oauth is None:
            raise ConfigError(
                "no API credentials: set ETL_API_TOKEN or ETL_API_TOKEN_FILE (static token), or "
                "ETL_OAUTH_TOKEN_URL, ETL_OAUTH_CLIENT_ID and ETL_OAUTH_CLIENT_SECRET[_FILE] (OAuth)"
            )
        return self.api


_KNOWN: dict[str, set[str]] = {
    "api": {
        "url",
        "token_file",
        "connect_timeout",
        "read_timeout",
        "max_decompressed_bytes",
        "ca_bundle",
        "max_concurrency",
        "proxy",
        "oauth",
        "filters",
        "verify",
    },
    "api.oauth": {"token_url", "client_id", "client_secret_file", "scope"},
    "warehouse": {"url", "schema", "batch_size", "keep_raw", "retention"},
    "pipeline": {
        "start",
        "window",
        "lag",
        "timezone",
        "on_bad_conversation",
        "workers",
        "claim_timeout",
        "deletes",
    },
    "retry": {"max_attempts", "max_total_wait", "initial_wait", "max_wait"},
    "reporting": {"timezone"},
}
_SECRET_KEYS = {"token", "client_secret", "password", "api_token"}
# Keys that hold a table of keys ([api.oauth]), not a value.
_TABLES = {*_KNOWN, "api.filters"}


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings once. `overrides` are dotted keys from flags (`pipeline.window`)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        raw = _read_toml(path)
    _check_keys(raw, source)
    _check_no_password(raw, source)
    merged = _merge_env(raw, env)
    flagged = frozenset(k for k, v in (overrides or {}).items() if v is not None)
    for dotted in flagged:
        _set_dotted(merged, dotted, (overrides or {})[dotted])
    from_env = {dotted: name for name, dotted in _FROM_ENV.items() if env.get(name)}
    return _build(merged, env, source, flagged, from_env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist: check --config (or ETL_CONFIG)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or type(exc).__name__}): check "
            "--config and the file's permissions"
        ) from None


def _check_keys(raw: Mapping[str, Any], source: str, prefix: str = "") -> None:
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key in _SECRET_KEYS:
            raise ConfigError(
                f"{dotted} in {source}: secrets are never read from config files; use the "
                "environment (ETL_API_TOKEN, ETL_OAUTH_CLIENT_SECRET) or a *_file key"
            )
        if prefix == "api.filters.":
            continue  # filter keys pass through unchanged, known or not
        allowed = _KNOWN.get(prefix.rstrip(".")) if prefix else set(_KNOWN) - {"api.oauth"}
        if allowed is None or key not in allowed:
            raise ConfigError(
                f"unknown key {dotted!r} in {source}: see config/etl.toml for the keys"
            )
        if dotted in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{dotted} in {source} must be a table of keys ([{dotted}]), not "
                    f"{type(value).__name__}: see config/etl.toml"
                )
            _check_keys(value, source, f"{dotted}.")


def _check_no_password(raw: Mapping[str, Any], source: str) -> None:
    """A password in the file's warehouse.url: secrets never come from config files."""
    url = raw.get("warehouse", {}).get("url")
    if not isinstance(url, str):
        return
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return  # reported as a bad URL by _database_url
    if parsed.password or "password" in parsed.query:
        register(str(parsed.password or parsed.query["password"]))
        raise ConfigError(
            f"warehouse.url in {source} holds a password: secrets are never read from config "
            "files; set ETL_DATABASE_URL in the environment, or keep the password in libpq's "
            "password file (~/.pgpass, or PGPASSFILE)"
        )


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


# The settings an environment variable sets (over the file's value), by dotted key.
_FROM_ENV: Final = {
    env_vars.DATABASE_URL: "warehouse.url",
    env_vars.DATABASE_SCHEMA: "warehouse.schema",
    env_vars.API_URL: "api.url",
    env_vars.API_TOKEN_FILE: "api.token_file",
    env_vars.OAUTH_TOKEN_URL: "api.oauth.token_url",
    env_vars.OAUTH_CLIENT_ID: "api.oauth.client_id",
    env_vars.OAUTH_CLIENT_SECRET_FILE: "api.oauth.client_secret_file",
}


def _merge_env(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    api = merged.setdefault("api", {})
    api["oauth"] = dict(api.get("oauth", {}))
    for name, dotted in _FROM_ENV.items():
        if env.get(name):
            _set_dotted(merged, dotted, env[name])
    return merged


def _build(
    tree: Mapping[str, Any],
    env: Mapping[str, str],
    source: str,
    flagged: frozenset[str],
    from_env: Mapping[str, str],
) -> Settings:
    def src(key: str) -> str:
        """Where `key`'s value came from, for its error message."""
        if key in flagged:
            return "a command-line option"
        if key in from_env:
            return f"the environment ({from_env[key]})"
        return source

    api_raw = tree.get("api", {})
    wh_raw = tree.get("warehouse", {})
    pl_raw = tree.get("pipeline", {})
    rt_raw = tree.get("retry", {})
    rp_raw = tree.get("reporting", {})
    if api_raw.get("verify") is False:
        raise ConfigError(
            f"api.verify = false in {source}: TLS verification cannot be turned off; "
            "set api.ca_bundle to your CA's PEM file instead"
        )
    zone = _convert(
        src("pipeline.timezone"), "pipeline.timezone", pl_raw.get("timezone", "UTC"), parse_zone
    )
    pipeline = PipelineSettings(
        start=_convert(
            src("pipeline.start"),
            "pipeline.start",
            pl_raw.get("start"),
            lambda v: parse_instant(v, zone),
        )
        if pl_raw.get("start") is not None
        else None,
        window=_positive(src("pipeline.window"), "pipeline.window", pl_raw.get("window", "1d")),
        lag=_convert(src("pipeline.lag"), "pipeline.lag", pl_raw.get("lag", "2h"), parse_duration),
        timezone=zone,
        on_bad_conversation=_choice(
            src("pipeline.on_bad_conversation"),
            "pipeline.on_bad_conversation",
            pl_raw.get("on_bad_conversation", FAIL),
            BAD_CONVERSATION_POLICIES,
        ),
        workers=_int(
            src("pipeline.workers"), "pipeline.workers", pl_raw.get("workers", 1), minimum=1
        ),
        claim_timeout=_positive(
            src("pipeline.claim_timeout"),
            "pipeline.claim_timeout",
            pl_raw.get("claim_timeout", "10m"),
        ),
        deletes=_choice(
            src("pipeline.deletes"),
            "pipeline.deletes",
            pl_raw.get("deletes", IGNORE),
            DELETE_POLICIES,
        ),
    )
    retry = RetrySettings(
        max_attempts=_int(
            src("retry.max_attempts"),
            "retry.max_attempts",
            rt_raw.get("max_attempts", 5),
            minimum=1,
        ),
        max_total_wait=_convert(
            src("retry.max_total_wait"),
            "retry.max_total_wait",
            rt_raw.get("max_total_wait", "10m"),
            parse_duration,
        ),
        initial_wait=_float(
            src("retry.initial_wait"), "retry.initial_wait", rt_raw.get("initial_wait", 1.0)
        ),
        max_wait=_float(src("retry.max_wait"), "retry.max_wait", rt_raw.get("max_wait", 120.0)),
    )
    url = _database_url(src("warehouse.url"), str(wh_raw.get("url", DEFAULT_DATABASE_URL)))
    schema = _text(src("warehouse.schema"), "warehouse.schema", wh_raw.get("schema")) or None
    if schema is not None and make_url(url).get_backend_name() != "postgresql":
        raise ConfigError(
            f"warehouse.schema in {src('warehouse.schema')} is {schema!r}, but schemas "
            "are a PostgreSQL feature: unset it for a SQLite warehouse"
        )
    warehouse = WarehouseSettings(
        url=url,
        schema=schema,
        batch_size=_int(
            src("warehouse.batch_size"),
            "warehouse.batch_size",
            wh_raw.get("batch_size", WarehouseSettings.batch_size),
            minimum=1,
        ),
        keep_raw=_bool(
            src("warehouse.keep_raw"), "warehouse.keep_raw", wh_raw.get("keep_raw", False)
        ),
        retention=_positive(src("warehouse.retention"), "warehouse.retention", wh_raw["retention"])
        if wh_raw.get("retention") is not None
        else None,
    )
    api = ApiSettings(
        url=_api_url(src("api.url"), api_raw.get("url")),
        token=_token(source, api_raw, env),
        oauth=_oauth(src("api.oauth.token_url"), api_raw.get("oauth", {}), env),
        filters=dict(api_raw.get("filters", {})),
        connect_timeout=_float(
            src("api.connect_timeout"), "api.connect_timeout", api_raw.get("connect_timeout", 10.0)
        ),
        read_timeout=_float(
            src("api.read_timeout"), "api.read_timeout", api_raw.get("read_timeout", 300.0)
        ),
        max_decompressed_bytes=_int(
            src("api.max_decompressed_bytes"),
            "api.max_decompressed_bytes",
            api_raw.get("max_decompressed_bytes", 4 * 1024**3),
            minimum=1,
        ),
        ca_bundle=_ca_bundle(source, api_raw.get("ca_bundle")),
        max_concurrency=_int(
            src("api.max_concurrency"), "api.max_concurrency", api_raw["max_concurrency"], minimum=1
        )
        if api_raw.get("max_concurrency") is not None
        else None,
        proxy=_proxy(source, api_raw, env),
        no_proxy=tuple(
            entry
            for entry in (env.get(env_vars.NO_PROXY) or env.get(env_vars.NO_PROXY.lower()) or "")
            .lower()
            .split(",")
            if entry.strip()
        ),
    )
    reporting = ReportingSettings(
        timezone=_convert(
            src("reporting.timezone"), "reporting.timezone", rp_raw["timezone"], parse_zone
        )
        if rp_raw.get("timezone") is not None
        else zone
    )
    return Settings(
        api=api,
        warehouse=warehouse,
        pipeline=pipeline,
        retry=retry,
        reporting=reporting,
        source=source,
    )


def _convert(source: str, key: str, value: Any, fn: Any) -> Any:
    try:
        return fn(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key} in {source}: {exc}") from None


def _choice(source: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(
            f"{key} in {source}: {value!r} is not one of {', '.join(map(repr, choices))}"
        )
    return str(value)


def _positive(source: str, key: str, value: Any) -> timedelta:
    result: timedelta = _convert(source, key, value, parse_duration)
    if result <= timedelta(0):
        raise ConfigError(f"{key} in {source}: must be longer than zero")
    return result


def _text(source: str, key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} in {source}: {value!r} is not text: put it in quotes")
    return value


def _bool(source: str, key: str, value: Any) -> bool:
    # bool("false") is True: only TOML's own true and false are taken.
    if not isinstance(value, bool):
        raise ConfigError(f"{key} in {source}: {value!r} is not true or false (without quotes)")
    return value


def _int(source: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{key} in {source}: {value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{key} in {source}: {value!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"{key} in {source}: must be at least {minimum}, got {number}")
    return number


def _float(source: str, key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} in {source}: {value!r} is not a number") from None
    if number <= 0:
        raise ConfigError(f"{key} in {source}: must be greater than zero, got {number}")
    return number


def _api_url(source: str, value: Any, key: str = "api.url") -> str | None:
    if value in (None, ""):
        return None
    # The value is not quoted: a URL with credentials in it, mistyped, would show them.
    if not _is_url(value):
        raise ConfigError(
            f"{key} in {source} is not an http(s) URL with a host name; "
            "give the site's base URL, e.g. https://yoursite.example.com"
        )
    parts = urlsplit(str(value))
    if parts.username or parts.password:
        raise ConfigError(
            f"{key} in {source}: credentials in the URL are not allowed; use ETL_API_TOKEN"
        )
    return str(value).rstrip("/")


def _proxy(source: str, api_raw: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The egress proxy for the site: HTTPS_PROXY (HTTP_PROXY for an http api.url) as curl and
    most tools read it, upper- or lower-case, a bare host:port meaning http://; else api.proxy.
    Nothing else comes from the environment: the HTTP client reads none of it (no CA bundle
    or .netrc that would change verification or credentials)."""
    url = str(api_raw.get("url") or "")
    variable = env_vars.HTTP_PROXY if url.startswith("http:") else env_vars.HTTPS_PROXY
    names = (variable, variable.lower())
    value, key = next(((env[n], f"the environment ({n})") for n in names if env.get(n)), (None, ""))
    if value is None:
        value, key = api_raw.get("proxy") or None, f"api.proxy in {source}"
    if value is None:
        return None
    value = str(value) if "://" in str(value) else f"http://{value}"
    if not _is_url(value, schemes=_PROXY_SCHEMES):
        raise ConfigError(
            f"the proxy in {key} is not a proxy URL with a host name: write e.g. "
            "http://proxy.example:3128 (or socks5h://…)"
        )
    password = urlsplit(value).password
    if password:  # proxy credentials: masked like any other secret
        register(password)
    return value


# What `requests` takes as a proxy (SOCKS with PySocks installed: requests[socks]).
_PROXY_SCHEMES: Final = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def _bypassed(host: str, no_proxy: tuple[str, ...]) -> bool:
    """Whether `no_proxy` (NO_PROXY's entries) names `host`: `*`, the host, or a domain it is
    in; and this machine itself, which no proxy reaches."""
    if host in ("localhost", "::1") or host.startswith("127."):
        return True
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def _is_url(value: Any, *, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    """Whether `value` is a URL of one of `schemes` with a host name and, if any, a valid
    port."""
    try:
        parts = urlsplit(str(value))
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:  # an unclosed IPv6 bracket, a port out of range
        return False
    return parts.scheme in schemes and bool(parts.hostname)


def _database_url(source: str, value: str) -> str:
    try:
        url: URL = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"warehouse.url in {source} is not a SQLAlchemy URL: write "
            "sqlite:///warehouse.db or postgresql+psycopg://user@host/db"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"warehouse.url in {source}: only sqlite and postgresql are supported")
    if url.password:
        register(str(url.password))
    if url.host and "@" in url.host:
        # A password with an '@' not URL-encoded: the URL parser ends the password at the first
        # '@' and reads the rest of it as the host, which every connection error would quote.
        register(url.host.rpartition("@")[0])
        raise ConfigError(
            f"warehouse.url in {source} has an '@' after its password: "
            "write '@' in a password as %40 (and ':' as %3A, '/' as %2F, '%' as %25)"
        )
    if "password" in url.query:  # libpq takes it from the query string too
        register(str(url.query["password"]))
    if url.get_backend_name() == "postgresql" and url.drivername != "postgresql+psycopg":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _ca_bundle(source: str, value: Any) -> Path | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ConfigError(f"api.ca_bundle in {source}: {path} is not a file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError, OSError):
        raise ConfigError(
            f"api.ca_bundle in {source}: {path} holds no certificate TLS can read: give the "
            "CA's certificates in PEM form (-----BEGIN CERTIFICATE-----)"
        ) from None
    return path


def _secret(what: str, text: str, *, header: bool) -> Secret:
    """A secret from the environment or a file, without the whitespace and byte-order mark
    around it; refused by name (never quoted) when nothing is left, or when it holds what it
    cannot be sent with (`_sendable`; `header`: a token sent in an HTTP header)."""
    value = text.strip().lstrip("\ufeff").strip()
    if not value:
        raise ConfigError(f"{what} is empty (or only whitespace): set the secret itself")
    for at, char in enumerate(value, start=1):
        if _sendable(char, header=header):
            continue
        kind = "a line break" if char in "\r\n" else f"character U+{ord(char):04X}"
        needs = "token is one line of printable ASCII" if header else "secret is Latin-1 text"
        raise ConfigError(
            f"{what} holds {kind} at position {at}: a {needs}; check that it was copied whole "
            "and alone"
        )
    return Secret(value)


def _sendable(char: str, *, header: bool) -> bool:
    """Whether a secret may hold `char`: a bearer token, in an HTTP header, printable ASCII
    without spaces; a client secret, in HTTP basic authentication (which requests writes as
    Latin-1), any printable Latin-1 character."""
    if header:
        return "!" <= char <= "~"
    return char.isprintable() and ord(char) <= 0xFF


def _read_secret_file(what: str, path_text: str, *, header: bool) -> Secret:
    path = Path(path_text).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: the secret file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{what}: cannot read a secret from {path}: {type(exc).__name__}"
        ) from None
    return _secret(f"{what}: the secret in {path}", text, header=header)


def _token(source: str, api_raw: Mapping[str, Any], env: Mapping[str, str]) -> Secret | None:
    if env.get(env_vars.API_TOKEN):
        return _secret(env_vars.API_TOKEN, env[env_vars.API_TOKEN], header=True)
    if api_raw.get("token_file"):
        return _read_secret_file(
            "api.token_file (or ETL_API_TOKEN_FILE)", str(api_raw["token_file"]), header=True
        )
    return None


def _oauth(source: str, raw: Mapping[str, Any], env: Mapping[str, str]) -> OAuthSettings | None:
    if not raw.get("token_url") and not raw.get("client_id"):
        return None
    missing = [k for k in ("token_url", "client_id") if not raw.get(k)]
    if missing:
        raise ConfigError(f"api.oauth in {source}: {', '.join(missing)} missing (or ETL_OAUTH_*)")
    if env.get(env_vars.OAUTH_CLIENT_SECRET):
        secret = _secret(
            env_vars.OAUTH_CLIENT_SECRET, env[env_vars.OAUTH_CLIENT_SECRET], header=False
        )
    elif raw.get("client_secret_file"):
        secret = _read_secret_file(
            "api.oauth.client_secret_file", str(raw["client_secret_file"]), header=False
        )
    else:
        raise ConfigError(
            "OAuth is configured but has no client secret: set ETL_OAUTH_CLIENT_SECRET or "
            "ETL_OAUTH_CLIENT_SECRET_FILE"
        )
    _api_url(source, raw["token_url"], "api.oauth.token_url")
    return OAuthSettings(
        token_url=str(raw["token_url"]),
        client_id=str(raw["client_id"]),
        client_secret=secret,
        # Space-separated scopes (RFC 6749): a TOML list would be sent as its Python repr.
        scope=_text(source, "api.oauth.scope", raw.get("scope", SCOPE)) or SCOPE,
    )
