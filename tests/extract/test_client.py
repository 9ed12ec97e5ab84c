"""The export client against the simulator over real loopback HTTP: normal windows and every fault."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from etl.config import ApiSettings, OAuthSettings
from etl.extract import (
    AuthError,
    BrokenStreamError,
    ExportClient,
    FatalAPIError,
    RequestRejected,
    ResponseTooLarge,
    RetriableAPIError,
)
from etl.fakeapi import Faults
from etl.secrets import Secret
from etl.windows import Window
from tests.conftest import SEED_EXPORT, SIM_SECRET, SIM_TOKEN

DAY = Window(datetime(2024, 3, 28, tzinfo=UTC), datetime(2024, 3, 29, tzinfo=UTC))


def client_for(api: Any, **changes: Any) -> ExportClient:
    settings: dict[str, Any] = {"url": api.url, "token": Secret(SIM_TOKEN), "read_timeout": 5.0}
    settings.update(changes)
    return ExportClient(ApiSettings(**settings))


def read_all(
    client: ExportClient, window: Window = DAY, filters: dict[str, Any] | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    with client.open(window, filters) as stream:
        conversations = list(stream)
        return stream, conversations


def test_normal_window_matches_query_info_and_simulator(make_sim: Any) -> None:
    api = make_sim()
    stream, conversations = read_all(client_for(api))
    assert stream.complete
    assert stream.expected == len(conversations) == stream.received > 0
    assert stream.post_query_info is not None and stream.post_query_info["conversations"] == len(
        conversations
    )
    expected = api.matching_ids(DAY.start, DAY.end)
    assert sorted(c["id"] for c in conversations) == sorted(expected)
    assert stream.query_info["query"]["from"] == "2024-03-28T00:00:00+00:00"


def test_gzip_is_negotiated_and_smaller_than_identity(make_sim: Any) -> None:
    api = make_sim()
    client = client_for(api)
    gz_stream, gz = read_all(client)
    # Ask for identity by overriding the negotiated header on this session.
    import requests

    raw = requests.post(
        api.export_url,
        json={"from": DAY.start.isoformat(), "to": DAY.end.isoformat()},
        headers={"Authorization": f"Bearer {SIM_TOKEN}", "Accept-Encoding": "identity"},
        timeout=10,
    )
    assert "Content-Encoding" not in raw.headers
    assert gz_stream.bytes_received < len(raw.content) / 3
    import json

    assert [c["id"] for c in json.loads(raw.content)[1:-1]] == [c["id"] for c in gz]


def test_identity_body_is_parsed(make_sim: Any) -> None:
    import requests

    from etl.extract.stream import ExportStream

    api = make_sim()
    response = requests.post(
        api.export_url,
        json={"from": DAY.start.isoformat(), "to": DAY.end.isoformat()},
        headers={"Authorization": f"Bearer {SIM_TOKEN}", "Accept-Encoding": "identity"},
        stream=True,
        timeout=10,
    )
    with ExportStream.from_response(response, DAY, 10**9) as stream:
        conversations = list(stream)
    assert stream.complete and len(conversations) == stream.expected


def test_filters_pass_through_unchanged(make_sim: Any) -> None:
    api = make_sim()
    ids = api.matching_ids(DAY.start, DAY.end)[:3]
    filters = {"conversation_ids": ids, "environment": "live", "future_filter": {"x": [1]}}
    stream, conversations = read_all(client_for(api), filters=filters)
    assert sorted(c["id"] for c in conversations) == sorted(ids)
    assert stream.query_info["query"]["future_filter"] == {"x": [1]}


def test_documented_example_served_from_file(make_sim: Any) -> None:
    api = make_sim(from_file=SEED_EXPORT)
    window = Window(datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
    stream, conversations = read_all(client_for(api), window)
    assert len(conversations) == 1
    assert conversations[0]["id"] == 1000001 and len(conversations[0]["messages"]) == 4
    assert stream.expected == 1 and stream.complete


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        (Faults(error_after=3), "reported an error mid-stream after 3 conversations"),
        (Faults(truncate_after=3), "connection broke mid-stream"),
        (Faults(truncate_gzip=True, truncate_gzip_after=2), "ended before the end of its gzip"),
        (Faults(unterminated_array=True), "before its JSON array was closed"),
        (Faults(omit_post_query_info=True), "without post_query_info"),
        (Faults(undercount=2), "announced"),
        (Faults(invalid_json=True), "not valid JSON"),
    ],
)
def test_broken_streams_are_retryable_and_incomplete(
    make_sim: Any, faults: Faults, needle: str
) -> None:
    api = make_sim(faults=faults)
    client = client_for(api)
    stream = None
    with pytest.raises(BrokenStreamError) as info:
        with client.open(DAY) as stream:
            list(stream)
    assert needle in str(info.value)
    assert str(DAY) in str(info.value)
    assert info.value.retryable
    assert stream is None or not stream.complete


def test_faults_stop_after_their_count_so_a_retry_succeeds(make_sim: Any) -> None:
    api = make_sim(faults=Faults(error_after=2, error_times=1))
    client = client_for(api)
    with pytest.raises(BrokenStreamError):
        read_all(client)
    stream, conversations = read_all(client)
    assert stream.complete and len(conversations) == stream.expected


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refused_names_token_scope_and_allowlist(make_sim: Any, status: int) -> None:
    api = make_sim(faults=Faults(status=status))
    with pytest.raises(AuthError) as info:
        read_all(client_for(api))
    message = str(info.value)
    assert "token" in message and "export:v3" in message and "allowlist" in message
    assert not info.value.retryable
    assert SIM_TOKEN not in message


def test_wrong_token_is_refused(make_sim: Any) -> None:
    api = make_sim()
    with pytest.raises(AuthError):
        read_all(client_for(api, token=Secret("not-the-right-token")))


@pytest.mark.parametrize("status", [400, 404, 422])
def test_rejected_request_includes_server_message(make_sim: Any, status: int) -> None:
    api = make_sim(faults=Faults(status=status))
    with pytest.raises(RequestRejected) as info:
        read_all(client_for(api))
    assert f"HTTP {status}" in str(info.value)
    assert not info.value.retryable


def test_bad_filter_rejected_with_server_message(make_sim: Any) -> None:
    api = make_sim()
    with pytest.raises(RequestRejected) as info:
        client_for(api).open(DAY, {"conversation_ids": "not-a-list"})
    assert "HTTP 400" in str(info.value)
    assert "conversation_ids" in str(info.value)  # the server's own message is included


def test_429_carries_retry_after(make_sim: Any) -> None:
    api = make_sim(faults=Faults(status=429, retry_after="7"))
    with pytest.raises(RetriableAPIError) as info:
        read_all(client_for(api))
    assert info.value.retry_after == 7.0 and "429" in str(info.value)


def test_5xx_is_retryable(make_sim: Any) -> None:
    api = make_sim(faults=Faults(status=503, status_times=1))
    with pytest.raises(RetriableAPIError):
        read_all(client_for(api))
    stream, _ = read_all(client_for(api))
    assert stream.complete


def test_connection_refused_is_retryable() -> None:
    client = ExportClient(
        ApiSettings(url="http://127.0.0.1:9", token=Secret(SIM_TOKEN), connect_timeout=2)
    )
    with pytest.raises(RetriableAPIError, match="could not connect"):
        client.open(DAY)


def _read_all_in_thread(api: Any, deadline: float, **settings: Any) -> BaseException | None:
    """What `read_all` raised, from a thread given `deadline` seconds (a hang fails the test)."""
    errors: list[BaseException] = []

    def read() -> None:
        try:
            read_all(client_for(api, **settings))
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(deadline)
    assert not reader.is_alive(), f"read_all did not return within {deadline}s"
    return errors[0] if errors else None


def test_read_timeouts_fire(make_sim: Any) -> None:
    for faults in (Faults(hang_before_headers=True), Faults(stall_after_headers=True)):
        # A deadline 25 times the timeout, and below any default (10 s connect, 300 s read):
        # the server would hang for good, and another limit would miss the deadline.
        error = _read_all_in_thread(make_sim(faults=faults), 5, read_timeout=0.2)
        assert isinstance(error, RetriableAPIError), error
        assert "timeout" in str(error) or "no response" in str(error)


def test_decompression_cap_stops_a_gzip_bomb(make_sim: Any) -> None:
    api = make_sim(faults=Faults(gzip_bomb=True, gzip_bomb_bytes=200 * 1024**2))
    with pytest.raises(ResponseTooLarge) as info:
        read_all(client_for(api, max_decompressed_bytes=10 * 1024**2))
    assert "10,485,760" in str(info.value)


def test_stacked_encoding_is_refused(make_sim: Any) -> None:
    api = make_sim(faults=Faults(stacked_encoding=True))
    with pytest.raises(FatalAPIError, match="stacked Content-Encoding"):
        read_all(client_for(api))


def oauth_client(api: Any, secret: str = SIM_SECRET) -> ExportClient:
    oauth = OAuthSettings(
        token_url=api.token_url, client_id="sim-client", client_secret=Secret(secret)
    )
    return ExportClient(ApiSettings(url=api.url, oauth=oauth, read_timeout=5.0))


def test_oauth_token_is_fetched_cached_and_refreshed_on_401(make_sim: Any) -> None:
    api = make_sim(token=None)
    client = oauth_client(api)
    read_all(client)
    read_all(client)
    assert api.token_requests == 1  # cached
    api.tokens.expire_all()  # the server revokes it early: the client sees a 401
    stream, _ = read_all(client)
    assert stream.complete
    assert api.token_requests == 2


def test_oauth_refreshes_before_expiry(make_sim: Any) -> None:
    api = make_sim(token=None, oauth_token_ttl=1.0)
    client = oauth_client(api)
    read_all(client)
    import time

    time.sleep(1.1)
    read_all(client)
    assert api.token_requests == 2


def test_oauth_wrong_secret_is_auth_error(make_sim: Any) -> None:
    api = make_sim(token=None)
    with pytest.raises(AuthError) as info:
        read_all(oauth_client(api, secret="wrong-secret-value"))
    assert "wrong-secret-value" not in str(info.value)


def test_no_secret_in_logs_or_errors(make_sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = make_sim(faults=Faults(status=401))
    texts: list[str] = []
    for client in (client_for(api), oauth_client(make_sim(token=None, faults=Faults(status=403)))):
        texts.append(repr(client))
        texts.append(repr(client.tokens))
        with pytest.raises(AuthError) as info:
            read_all(client)
        texts.append(str(info.value))
        texts.append(repr(info.value))
    texts.append(caplog.text)
    joined = "\n".join(texts)
    assert SIM_TOKEN not in joined and SIM_SECRET not in joined
    assert "export:v3" in joined


def test_request_sends_explicit_offsets() -> None:
    from zoneinfo import ZoneInfo

    from etl.extract import request_body

    oslo = ZoneInfo("Europe/Oslo")
    window = Window(datetime(2024, 3, 31, tzinfo=oslo), datetime(2024, 4, 1, tzinfo=oslo))
    body = request_body(window, {"environment": "live", "from": "ignored"})
    assert body == {
        "environment": "live",
        "from": "2024-03-30T23:00:00+00:00",
        "to": "2024-03-31T22:00:00+00:00",
    }
    assert datetime.fromisoformat(body["to"]) - datetime.fromisoformat(body["from"]) == timedelta(
        hours=23
    )


class _RawServer:
    """Answers each connection with `reply` (head and body bytes), then waits `linger`
    seconds before closing: error responses whose body is cut off, stalls or is corrupt."""

    def __init__(self, reply: bytes, linger: float) -> None:
        import socket

        self._reply, self._linger = reply, linger
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket

        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(self._reply)
                self._stop.wait(self._linger)
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.mark.parametrize(
    ("reply", "linger"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 500\r\n\r\nthe body is cut", 0.0),
        (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n40\r\nabc", 0.0),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 500\r\n\r\nthen nothing", 3.0),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
         b"not gzip!", 0.0),
    ],
    ids=["cut", "chunk-cut", "stall", "corrupt-gzip"],
)  # fmt: skip
def test_an_error_status_stays_retriable_whatever_its_body_does(
    reply: bytes, linger: float
) -> None:
    """The status decides: a 5xx is retried, even when its body breaks off, stalls or does
    not decode (these once ended in exit 1, 'This is a bug')."""
    server = _RawServer(reply, linger)
    try:
        client = ExportClient(
            ApiSettings(url=server.url, token=Secret(SIM_TOKEN), read_timeout=1.0)
        )
        with pytest.raises(RetriableAPIError, match=r"the API failed with HTTP 50[23]"):
            read_all(client)
    finally:
        server.close()


class _ForwardingProxy(BaseHTTPRequestHandler):
    """An egress proxy: a request for any host goes to the simulator on `upstream`."""

    upstream = 0
    seen: ClassVar[list[str]] = []

    def _forward(self) -> None:
        target = urlsplit(self.path)
        self.seen.append(f"{self.command} {target.hostname}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        conn.request(self.command, target.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_site_behind_an_egress_proxy_is_reached_through_it(make_sim: Any) -> None:
    """The proxy is taken from HTTP_PROXY as curl takes it (and nothing else from the
    environment); the site's name resolves only at the proxy."""
    from etl.config import load_settings

    api = make_sim()
    handler = type("Proxy", (_ForwardingProxy,), {"upstream": api.port, "seen": []})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        settings = load_settings(
            None,
            env={
                "ETL_API_URL": "http://chatbot.internal.example",
                "ETL_API_TOKEN": SIM_TOKEN,
                "http_proxy": f"http://127.0.0.1:{proxy.server_address[1]}",
                "NO_PROXY": "elsewhere.example,.other.example",
            },
        )
        stream, conversations = read_all(ExportClient(settings.api))
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert stream.complete and conversations
    assert handler.seen == ["POST chatbot.internal.example"]


@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [("", True), ("chatbot.example", False), (".example", False), ("*", False), ("other.x", True)],
)
def test_no_proxy_names_the_hosts_reached_without_it(no_proxy: str, proxied: bool) -> None:
    from etl.config import load_settings

    env = {"ETL_API_URL": "https://chatbot.example", "HTTPS_PROXY": "p.example:3128"}
    api = load_settings(None, env={**env, "NO_PROXY": no_proxy}).api
    through = {"http": "http://p.example:3128", "https": "http://p.example:3128"}
    assert api.proxies_for(api.export_url) == (through if proxied else {})
    # The OAuth token endpoint is judged by its own host.
    assert api.proxies_for("https://login.other.x/oauth/token") == (
        {} if no_proxy in ("*", "other.x") else through
    )


def test_a_socks_proxy_needs_pysocks_and_a_garbage_one_is_refused() -> None:
    from importlib.util import find_spec

    from etl.config import load_settings
    from etl.errors import ConfigError

    env = {"ETL_API_URL": "https://chatbot.example", "ETL_API_TOKEN": SIM_TOKEN}
    socks = load_settings(None, env={**env, "https_proxy": "socks5h://p.example:1080"})
    if find_spec("socks") is None:
        with pytest.raises(ConfigError, match="requests\\[socks\\]"):
            ExportClient(socks.api)
    with pytest.raises(ConfigError, match="not a proxy URL"):
        load_settings(None, env={**env, "HTTPS_PROXY": "ftp://p.example"})


class _Redirecting(BaseHTTPRequestHandler):
    """A site that sends every request to a sign-in page (with a token in the query)."""

    def _redirect(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(302)
        self.send_header("Location", "/login?session=secret-session-value")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _redirect

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_said_and_not_followed(redirecting: str) -> None:
    client = ExportClient(ApiSettings(url=redirecting, token=Secret(SIM_TOKEN)))
    with pytest.raises(RequestRejected) as raised:
        client.open(DAY)
    message = str(raised.value)
    assert f"HTTP 302, a redirect to {redirecting}/login" in message and "check api.url" in message
    assert "secret-session-value" not in message
    assert raised.value.exit_code == 2


def test_an_oauth_token_endpoint_that_redirects_names_the_setting(redirecting: str) -> None:
    oauth = OAuthSettings(
        token_url=f"{redirecting}/oauth/token", client_id="c", client_secret=Secret(SIM_SECRET)
    )
    client = ExportClient(ApiSettings(url=redirecting, oauth=oauth))
    with pytest.raises(RequestRejected) as raised:
        client.open(DAY)
    assert f"{redirecting}/oauth/token answered HTTP 302" in str(raised.value)
    assert "check api.oauth.token_url" in str(raised.value)
