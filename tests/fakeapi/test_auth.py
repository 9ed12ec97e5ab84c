"""Bearer-token auth: static token, OAuth client-credentials tokens, expiry."""

from __future__ import annotations

import time

import pytest
import requests

from etl.fakeapi import FakeApi

from .conftest import MakeApi
from .helpers import export, export_ok

DAY = {"from": "2024-03-26", "to": "2024-03-27"}


def get_token(api: FakeApi, basic: bool = False, **form: str) -> requests.Response:
    data = {"grant_type": "client_credentials", "scope": "export:v3", **form}
    auth = None
    if basic:
        auth = (data.pop("client_id", "sim-client"), data.pop("client_secret", "sim-secret"))
    else:
        data.setdefault("client_id", "sim-client")
        data.setdefault("client_secret", "sim-secret")
    return requests.post(api.url + "/oauth/token", data=data, auth=auth, timeout=10)


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_missing_or_wrong_token_is_401(api: FakeApi, token: str | None) -> None:
    r = export(api, DAY, token=token)
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["message"]
    assert "sim-token" not in r.text


def test_non_bearer_scheme_is_401(api: FakeApi) -> None:
    r = requests.post(
        api.url + "/api/export/v3", json=DAY, auth=("sim-client", "sim-secret"), timeout=10
    )
    assert r.status_code == 401


@pytest.mark.parametrize("basic", [False, True])
def test_oauth_token_works(api: FakeApi, basic: bool) -> None:
    r = get_token(api, basic=basic)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "export:v3"
    assert body["expires_in"] == 300 and len(body["access_token"]) >= 32
    export_ok(api, DAY, token=body["access_token"])
    assert get_token(api).json()["access_token"] != body["access_token"]
    assert api.token_requests == 2


def test_oauth_errors(api: FakeApi) -> None:
    r = get_token(api, client_secret="nope")
    assert r.status_code == 401 and r.json() == {"error": "invalid_client"}
    r = get_token(api, basic=True, client_id="someone")
    assert r.status_code == 401 and r.json() == {"error": "invalid_client"}
    r = get_token(api, scope="export:v2 read")
    assert r.status_code == 400 and r.json() == {"error": "invalid_scope"}
    r = get_token(api, grant_type="password")
    assert r.status_code == 400 and r.json() == {"error": "unsupported_grant_type"}
    assert get_token(api, scope="read export:v3").status_code == 200
    assert api.token_requests == 5


def test_expired_token_is_401(make_api: MakeApi) -> None:
    api = make_api(oauth_token_ttl=0.3)
    token = get_token(api).json()["access_token"]
    export_ok(api, DAY, token=token)
    time.sleep(0.4)
    assert export(api, DAY, token=token).status_code == 401
    export_ok(api, DAY, token=get_token(api).json()["access_token"])


def test_static_token_can_be_disabled(make_api: MakeApi) -> None:
    api = make_api(token=None)
    assert export(api, DAY).status_code == 401
    export_ok(api, DAY, token=get_token(api).json()["access_token"])
    api.tokens.expire_all()
    assert export(api, DAY, token="anything").status_code == 401


def test_oauth_disabled(make_api: MakeApi) -> None:
    api = make_api(oauth_client_id=None, oauth_client_secret=None)
    assert get_token(api).status_code == 401
    export_ok(api, DAY)
