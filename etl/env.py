"""Every environment variable the project reads, declared once (README: Configuration).

Configuration variables override the config file (`etl.config.load_settings`); the test
variables only drive the pause points of `etl.testhooks`, which never change what a run does.
"""

from __future__ import annotations

from typing import Final

CONFIG: Final = "ETL_CONFIG"
"""The config file, like `--config`."""

DATABASE_URL: Final = "ETL_DATABASE_URL"
"""SQLAlchemy URL of the warehouse (warehouse.url)."""

DATABASE_SCHEMA: Final = "ETL_DATABASE_SCHEMA"
"""PostgreSQL schema for the tables (warehouse.schema)."""

API_URL: Final = "ETL_API_URL"
"""The vendor site's base URL (api.url)."""

API_TOKEN: Final = "ETL_API_TOKEN"
"""A static bearer token for the export API (a secret: never in a config file)."""

API_TOKEN_FILE: Final = "ETL_API_TOKEN_FILE"
"""A file holding the static bearer token (api.token_file)."""

OAUTH_TOKEN_URL: Final = "ETL_OAUTH_TOKEN_URL"
"""OAuth 2.0 token endpoint (api.oauth.token_url)."""

OAUTH_CLIENT_ID: Final = "ETL_OAUTH_CLIENT_ID"
"""OAuth 2.0 client id (api.oauth.client_id)."""

OAUTH_CLIENT_SECRET: Final = "ETL_OAUTH_CLIENT_SECRET"
"""OAuth 2.0 client secret (a secret: never in a config file)."""

OAUTH_CLIENT_SECRET_FILE: Final = "ETL_OAUTH_CLIENT_SECRET_FILE"
"""A file holding the OAuth client secret (api.oauth.client_secret_file)."""

HTTPS_PROXY: Final = "HTTPS_PROXY"
"""The egress proxy for an https api.url (api.proxy); also read lower-case, as curl does."""

HTTP_PROXY: Final = "HTTP_PROXY"
"""The egress proxy for an http api.url (api.proxy); also read lower-case."""

NO_PROXY: Final = "NO_PROXY"
"""Hosts reached without the proxy (comma-separated, as curl reads it); also lower-case."""

TEST_PAUSE_AT: Final = "ETL_TEST_PAUSE_AT"
"""Tests only: comma-separated pause points (etl.testhooks) at which the process waits."""

TEST_PAUSE_AFTER: Final = "ETL_TEST_PAUSE_AFTER"
"""Tests only: `mid-stream` waits once at least this many conversations are loaded (default 1)."""

TEST_PAUSE_SECONDS: Final = "ETL_TEST_PAUSE_SECONDS"
"""Tests only: how long a pause point waits at most (default 3600)."""

TEST_PAUSE_RESUME: Final = "ETL_TEST_PAUSE_RESUME"
"""Tests only: a file whose appearance ends a pause."""
