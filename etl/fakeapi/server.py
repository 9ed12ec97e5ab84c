"""The simulator's HTTP server: routing, auth, and the streamed export response."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from etl.fakeapi import faults as F
from etl.fakeapi.dataset import Dataset
from etl.fakeapi.export import ExportResponse, RequestError, parse_query
from etl.fakeapi.oauth import TokenStore
from etl.fakeapi.options import AT_CAPACITY_RETRY_AFTER, FakeApiOptions
from etl.fakeapi.stream import (
    BodyWriter,
    ChunkedSink,
    Encoder,
    Marker,
    Stacked,
    Zlib,
    choose_encoding,
    make_encoder,
    write_array,
)
from etl.fakeapi.timefmt import to_us

log = logging.getLogger("etl.fakeapi")

EXPORT_PATH = "/api/export/v3"
TOKEN_PATH = "/oauth/token"
MAX_BODY = 1 << 20


class FakeApi:
    """A loopback HTTP server behaving like the vendor's Export API v3."""

    def __init__(self, options: FakeApiOptions | None = None) -> None:
        self.options = opts = options or FakeApiOptions()
        self.zone = ZoneInfo(opts.zone)
        if opts.from_file is not None:
            self.dataset = Dataset.from_file(opts.from_file)
        elif isinstance(opts.dataset, Dataset):
            self.dataset = opts.dataset
        else:
            self.dataset = Dataset.build(opts.dataset, self.zone)
        self.tokens = TokenStore(
            opts.token, opts.oauth_client_id, opts.oauth_client_secret, opts.oauth_token_ttl
        )
        self.now = opts.now
        self.deleted = opts.deleted_ids
        self._lock = threading.Lock()
        self._export_requests = 0
        self._token_requests = 0
        self._exporting = 0
        self._peak = 0
        self._refused = 0
        self._conns: set[socket.socket] = set()
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeApi:
        if self._server is not None:
            return self
        self.stopping.clear()
        server = _Server((self.options.host, self.options.port), _Handler)
        server.api = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"fake-api:{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # unblock handlers waiting on idle keep-alive or slow clients
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def export_url(self) -> str:
        return self.url + EXPORT_PATH

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def export_requests(self) -> int:
        with self._lock:
            return self._export_requests

    @property
    def token_requests(self) -> int:
        with self._lock:
            return self._token_requests

    def now_us(self) -> int:
        """The server clock in epoch microseconds (fixed `now`, or the real clock)."""
        now = self.now
        if now is None:
            return int(time.time() * 1_000_000)
        return to_us(now if now.tzinfo is not None else now.replace(tzinfo=self.zone))

    def matching_ids(
        self,
        start: datetime,
        end: datetime,
        conversation_ids: list[int] | None = None,
        environment: str | None = "live",
    ) -> list[int]:
        """What an export of [start, end) returns now (default environment as the API)."""
        found = self.dataset.select(
            to_us(start), to_us(end), conversation_ids, environment, self.now_us()
        )
        return [self.dataset.ids[i] for i in found if self.dataset.ids[i] not in self.deleted]

    def delete(self, ids: Iterable[int]) -> None:
        """Delete conversations at the source, as the vendor does on an erasure request or at
        the end of its retention: later exports leave them out."""
        self.deleted = self.deleted | frozenset(ids)

    def _count(self, export: bool) -> int:
        with self._lock:
            if export:
                self._export_requests += 1
                return self._export_requests
            self._token_requests += 1
            return self._token_requests

    @property
    def exports_in_flight_peak(self) -> int:
        """The most export requests this server was answering at one time."""
        with self._lock:
            return self._peak

    @property
    def refused_at_capacity(self) -> int:
        """Export requests refused with 429 because max_concurrent were being answered."""
        with self._lock:
            return self._refused

    @contextmanager
    def _in_flight(self) -> Iterator[bool]:
        """Whether an export may be answered now (max_concurrent), counted while it is."""
        limit = self.options.max_concurrent
        with self._lock:
            admitted = limit is None or self._exporting < limit
            if admitted:
                self._exporting += 1
                self._peak = max(self._peak, self._exporting)
            else:
                self._refused += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self._exporting -= 1

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    api: FakeApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("fake-api: error while handling %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeExportApi/3"
    timeout = 300.0

    @property
    def api(self) -> FakeApi:
        return cast(_Server, self.server).api

    def setup(self) -> None:
        super().setup()
        self.api._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.api._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake-api %s " + format, self.address_string(), *args)

    # -- routing -----------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == EXPORT_PATH:
            self._export()
        elif path == TOKEN_PATH:
            self._token()
        else:
            self._read_body()
            self._json(404, {"type": "error", "message": f"no such endpoint: {path}"})

    def _other_method(self) -> None:
        self._read_body()
        path = urlsplit(self.path).path
        if path in (EXPORT_PATH, TOKEN_PATH):
            message = f"method {self.command} not allowed; use POST"
            self._json(405, {"type": "error", "message": message}, {"Allow": "POST"})
        else:
            self._json(404, {"type": "error", "message": f"no such endpoint: {path}"})

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _other_method

    # -- helpers -----------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                size += n
                if size > MAX_BODY:
                    raise ConnectionAbortedError("request body too large")
                parts.append(self.rfile.read(n))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ConnectionAbortedError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"type": "error", "message": message}, headers)

    def _start_chunked(self, encoding: str | None, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Vary", "Accept-Encoding")
        self.end_headers()

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- endpoints ---------------------------------------------------------------------------
    def _token(self) -> None:
        self.api._count(export=False)
        body = self._read_body()
        reply = self.api.tokens.issue(self.headers.get("Authorization"), body)
        headers = {"Cache-Control": "no-store"}
        if reply.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="oauth"'
        self._json(reply.status, reply.body, headers)

    def _export(self) -> None:
        body = self._read_body()
        with self.api._in_flight() as admitted:
            if admitted:
                self._export_in_flight(body)
                return
        self.api._count(export=True)
        self._error(
            429,
            "too many export requests at once from this client",
            {"Retry-After": AT_CAPACITY_RETRY_AFTER},
        )

    def _export_in_flight(self, body: bytes) -> None:
        api = self.api
        n = api._count(export=True)
        if not api.tokens.check(self.headers.get("Authorization")):
            self._error(
                401, "missing, invalid or expired bearer token", {"WWW-Authenticate": "Bearer"}
            )
            return
        try:
            query = parse_query(body, api.zone)
        except RequestError as exc:
            self._error(400, exc.message)
            return
        plan = api.options.faults.plan(n, query.start)
        opts = api.options
        try:
            response = ExportResponse(
                api.dataset,
                query,
                api.zone,
                api.now_us(),
                latency=opts.latency,
                rate=opts.rate,
                sleep=api.stopping.wait,
                deleted=api.deleted,
            )
            self._respond(query_stream=response, plan=plan)
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.debug("fake-api: client gone during export: %r", exc)
            self.close_connection = True

    def _respond(self, query_stream: ExportResponse, plan: F.FaultPlan) -> None:
        api = self.api
        if plan.hang:
            F.wait_for_hangup(self.connection, api.stopping)
            self.close_connection = True
            return
        if plan.status is not None:
            headers = {"Retry-After": plan.retry_after} if plan.retry_after else None
            self._error(plan.status, f"simulated failure (HTTP {plan.status})", headers)
            return
        sink = ChunkedSink(self.wfile, api.stopping, plan.trickle_bytes_per_s)
        if plan.invalid_json:
            self._start_chunked(None)
            sink.write(F.INVALID_JSON_BODY)
            sink.end()
            return
        encoding = choose_encoding(self.headers.get("Accept-Encoding"))
        if plan.forces_gzip:
            encoding = "gzip"
        encoder: Encoder = make_encoder(encoding)
        if plan.stacked:
            encoder = Stacked(Zlib("gzip"), Zlib("gzip"))
        self._start_chunked(encoder.header)
        if plan.gzip_bomb_bytes is not None:
            prefix = b"[" + query_stream.query_info() + b","
            suffix = query_stream.post_query_info() + b"]"
            for part in F.gzip_bomb(prefix, plan.gzip_bomb_bytes, suffix):
                if api.stopping.is_set():
                    raise ConnectionAbortedError("server stopping")
                sink.write(part)
            sink.end()
            return
        if plan.stall:
            sink.write(encoder.compress(b"[") + encoder.sync())
            self.wfile.flush()
            F.wait_for_hangup(self.connection, api.stopping)
            self.close_connection = True
            return
        writer = BodyWriter(encoder, sink)
        items = F.faulty_items(query_stream, plan) if plan.alters_stream else query_stream.items()
        marker = write_array(items, writer)
        if marker is Marker.ABORT:
            sink.write_partial_chunk(writer.pending_encoded())
            self._hang_up()
        elif marker is Marker.CUT_COMPRESSED:
            writer.cut_compressed()
        else:
            writer.finish()
