"""Secrets (issue group 10): with `-v --log-format json`, whatever fails, neither the API token,
the OAuth client secret, an issued access token nor the database password appears in any output,
log line, stored error text or status report.

Every test of this suite is also checked by the autouse fixture `no_secret_in_any_output`
(conftest.py): each `etl` process it starts runs with `-v --log-format json`, a static token and
(on PostgreSQL) a password in the database URL, and its whole output is grepped afterwards.
This module adds OAuth and one pass over every kind of failure, and reads back what the
warehouse stored about them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from etl.fakeapi import Faults
from tests.conftest import SIM_SECRET, SIM_TOKEN, TestWarehouse
from tests.reliability import helpers as h

pytestmark = pytest.mark.reliability


def test_no_secret_in_any_output_of_any_failure(
    pg_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    wh = pg_warehouse
    assert h.DB_PASSWORD in wh.url  # the password really is there to leak
    wh.migrate()
    site = h.Site(make_sim)
    issued: list[str] = []

    def serve(**options: Any) -> dict[str, str]:
        api = site.serve(**options)
        issue = api.tokens.issue

        def recording_issue(*args: Any) -> Any:
            reply = issue(*args)
            issued.extend([reply.body["access_token"]] if "access_token" in reply.body else [])
            return reply

        api.tokens.issue = recording_issue
        return {
            "ETL_OAUTH_TOKEN_URL": api.token_url,
            "ETL_OAUTH_CLIENT_ID": "sim-client",
            "ETL_OAUTH_CLIENT_SECRET": SIM_SECRET,
        }

    cfg = h.config(
        tmp_path, retry={"max_attempts": 2}, api={"max_decompressed_bytes": 20 * 1024**2}
    )
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"type": "query_info", "conversations": 1}, {"id": NaN}]')
    down = h.TestWarehouse(
        "postgres", make_url(wh.url).set(port=1).render_as_string(False), wh.schema
    )
    results: list[h.Result] = []

    def run(*args: str, target: TestWarehouse = wh, **env: str) -> h.Result:
        result = h.run(*args, wh=target, site=site, config=cfg, extra_env=env)
        results.append(result)
        return result

    until = ("run", "--until", h.UNTIL)
    oauth = serve(faults=Faults(status=401))
    assert run(*until, **oauth).code == 3  # refused even with a fresh OAuth token
    oauth = serve(faults=Faults(status=403))
    assert run(*until, **oauth).code == 3
    oauth = serve()
    assert run(*until, **{**oauth, "ETL_OAUTH_CLIENT_SECRET": SIM_SECRET + "-wrong"}).code == 3
    oauth = serve(faults=Faults(status=503))
    assert run(*until, **oauth).code == 4
    oauth = serve(faults=Faults(error_after=3))
    assert run(*until, **oauth).code == 4
    oauth = serve(faults=Faults(gzip_bomb=True, gzip_bomb_bytes=1 << 30))
    assert run(*until, **oauth).code == 4
    assert run(*until, target=down, **oauth).code == 7
    assert run("load-file", str(bad)).code == 5
    assert run("run", "--until", "not-a-date").code == 2
    oauth = serve()
    assert run(*until, **oauth).code == 0  # and a good run, whose debug log is the longest
    status = run("status", "--json")
    assert status.code == 0
    assert issued, "OAuth tokens were issued"

    stored = [str(r) for r in h.query(wh, f"SELECT error, rows FROM {wh.table('etl_runs')}")]
    state = [str(r) for r in h.query(wh, f"SELECT * FROM {wh.table('etl_state')}")]
    haystack = "\n".join([*(r.output for r in results), *stored, *state])
    for secret in (SIM_TOKEN, SIM_SECRET, h.DB_PASSWORD, *issued):
        assert secret not in haystack, f"{secret[:4]}… leaked"
    assert "export:v3" in haystack  # the auth failures were explained

    for result in results:  # JSON lines throughout, for schedulers
        for line in result.stderr.splitlines():
            try:
                json.loads(line)
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}\n{result.stderr}") from None


def test_the_secret_check_would_catch_a_leak() -> None:
    """The grep is not vacuous: the fixture's check fails on output holding a secret."""
    from tests.reliability.conftest import assert_no_secret

    assert_no_secret(["all clear"])
    for secret in h.SECRETS:
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_secret([f'{{"message": "failed with {secret} in it"}}'])
