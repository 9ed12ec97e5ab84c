"""A server that echoes the token it refused: the token reaches no output and no table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import text

from tests.conftest import TestWarehouse
from tests.pipeline.cli_helpers import etl

TOKEN = "echoed-token-Zq81xv"


class _EchoingRefusal(BaseHTTPRequestHandler):
    # How the refusal quotes the token: whole in a short text, or where the client's error
    # message is cut short (200 characters of text, 500 of a JSON message): mid-token.
    shape = "plain"

    def do_GET(self) -> None:
        words = f"invalid bearer token {self.headers.get('Authorization', '')}"
        if self.shape == "text-cut-mid-token":
            words = "x" * (200 - len("invalid bearer token Bearer echoed")) + words
        elif self.shape == "json-cut-mid-token":
            words = json.dumps({"message": "y" * (500 - len(words) + 10) + words})
        body = words.encode()
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=["plain", "text-cut-mid-token", "json-cut-mid-token"])
def echoing_api(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Refusal", (_EchoingRefusal,), {"shape": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_token_the_server_echoes_is_kept_out_of_logs_tables_and_status(
    migrated: TestWarehouse, echoing_api: str
) -> None:
    env = {"ETL_API_URL": echoing_api, "ETL_API_TOKEN": TOKEN}
    result = etl("backfill", "--from", "2024-03-25", "--to", "2024-03-26", wh=migrated,
                 extra_env=env)  # fmt: skip
    assert result.code == 3, result.output
    assert "invalid bearer token" in result.stderr  # the server's words are kept ...
    assert TOKEN[:6] not in result.output  # ... but not the token in them, nor its start
    engine = migrated.engine()
    try:
        with engine.connect() as conn:
            stored = [
                row[0]
                for table in ("etl_runs", "etl_windows")
                for row in conn.execute(text(f"SELECT error FROM {migrated.table(table)}"))
            ]
    finally:
        engine.dispose()
    assert any(error and "invalid bearer token" in error for error in stored), stored
    assert not any(error and TOKEN[:6] in error for error in stored), stored
    for output in ("text", "json"):
        status = etl("status", "--format", output, wh=migrated, extra_env=env)
        assert TOKEN[:6] not in status.output, output
