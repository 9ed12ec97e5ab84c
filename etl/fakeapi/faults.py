"""Fault injection: which faults hit which export request, and how each one misbehaves."""

from __future__ import annotations

import functools
import select
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime

from etl.fakeapi.export import ExportResponse, error_element
from etl.fakeapi.stream import Item, Marker

ALWAYS = -1


@dataclass(frozen=True)
class Faults:
    """Faults chosen at start-up; each `*_times` K applies it to the first K export requests
    (counting every POST to the export endpoint, 1-based); K = -1 means every request."""

    error_after: int | None = None  # after N conversations: an error element, then "]"
    error_times: int = ALWAYS
    # Faults hit only exports of windows that start at these instants (ISO 8601 with an
    # offset); empty: every export. Request numbers (the `*_times`) count every export.
    only_starts: tuple[str, ...] = ()
    error_message: str = "internal error while exporting conversations"
    truncate_after: int | None = None  # after N conversations: hang up mid-chunk
    truncate_times: int = ALWAYS
    truncate_gzip: bool = False  # gzip stream cut short, chunked body ends cleanly
    truncate_gzip_times: int = ALWAYS
    truncate_gzip_after: int = 1  # conversations sent before the cut
    unterminated_array: bool = False  # everything but the final "]"
    unterminated_array_times: int = ALWAYS
    omit_post_query_info: bool = False
    omit_post_query_info_times: int = ALWAYS
    undercount: int = 0  # query_info announces this many more conversations than are sent
    undercount_times: int = ALWAYS
    invalid_json: bool = False  # status 200, body is an HTML error page
    invalid_json_times: int = ALWAYS
    status: int | None = None  # respond with this HTTP status and an error object
    status_times: int = ALWAYS
    retry_after: str | None = None  # Retry-After header value sent with `status`
    hang_before_headers: bool = False  # read the request, never answer
    hang_before_headers_times: int = ALWAYS
    stall_after_headers: bool = False  # send headers and "[", then nothing
    stall_after_headers_times: int = ALWAYS
    trickle_bytes_per_s: int | None = None  # every response body trickles at this rate
    gzip_bomb: bool = False  # tiny gzip body inflating to gzip_bomb_bytes
    gzip_bomb_times: int = ALWAYS
    gzip_bomb_bytes: int = 1 << 30
    stacked_encoding: bool = False  # Content-Encoding: gzip, gzip
    stacked_encoding_times: int = ALWAYS

    def plan(self, n: int, start: datetime | None = None) -> FaultPlan:
        """The faults that hit export request number n (1-based), of a window from `start`."""
        spared = bool(self.only_starts) and not any(
            start == datetime.fromisoformat(only) for only in self.only_starts
        )

        def on(enabled: bool, times: int) -> bool:
            return enabled and (times < 0 or n <= times) and not spared

        return FaultPlan(
            hang=on(self.hang_before_headers, self.hang_before_headers_times),
            status=self.status if on(self.status is not None, self.status_times) else None,
            retry_after=self.retry_after,
            invalid_json=on(self.invalid_json, self.invalid_json_times),
            stall=on(self.stall_after_headers, self.stall_after_headers_times),
            error_after=self.error_after
            if on(self.error_after is not None, self.error_times)
            else None,
            error_message=self.error_message,
            truncate_after=self.truncate_after
            if on(self.truncate_after is not None, self.truncate_times)
            else None,
            truncate_gzip_after=self.truncate_gzip_after
            if on(self.truncate_gzip, self.truncate_gzip_times)
            else None,
            unterminated=on(self.unterminated_array, self.unterminated_array_times),
            omit_post=on(self.omit_post_query_info, self.omit_post_query_info_times),
            undercount=self.undercount if on(self.undercount > 0, self.undercount_times) else 0,
            gzip_bomb_bytes=self.gzip_bomb_bytes
            if on(self.gzip_bomb, self.gzip_bomb_times)
            else None,
            stacked=on(self.stacked_encoding, self.stacked_encoding_times),
            trickle_bytes_per_s=self.trickle_bytes_per_s,
        )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class FaultPlan:
    """The faults resolved for one request."""

    hang: bool = False
    status: int | None = None
    retry_after: str | None = None
    invalid_json: bool = False
    stall: bool = False
    error_after: int | None = None
    error_message: str = ""
    truncate_after: int | None = None
    truncate_gzip_after: int | None = None
    unterminated: bool = False
    omit_post: bool = False
    undercount: int = 0
    gzip_bomb_bytes: int | None = None
    stacked: bool = False
    trickle_bytes_per_s: int | None = None

    @property
    def alters_stream(self) -> bool:
        return bool(
            self.error_after is not None
            or self.truncate_after is not None
            or self.truncate_gzip_after is not None
            or self.unterminated
            or self.omit_post
            or self.undercount
        )

    @property
    def forces_gzip(self) -> bool:
        return self.truncate_gzip_after is not None or self.gzip_bomb_bytes is not None


def faulty_items(stream: ExportResponse, plan: FaultPlan) -> Iterator[Item]:
    """The response elements with the plan's stream faults applied."""
    yield stream.query_info(announce_extra=plan.undercount)
    for n, conv in enumerate(stream.conversations()):
        if plan.error_after is not None and n >= plan.error_after:
            yield error_element(plan.error_message)
            return
        if plan.truncate_after is not None and n >= plan.truncate_after:
            yield Marker.ABORT
            return
        if plan.truncate_gzip_after is not None and n >= plan.truncate_gzip_after:
            yield Marker.CUT_COMPRESSED
            return
        yield conv
    # fewer conversations than N: the fault still happens, at the end of the list
    if plan.error_after is not None:
        yield error_element(plan.error_message)
        return
    if plan.truncate_after is not None:
        yield Marker.ABORT
        return
    if plan.truncate_gzip_after is not None:
        yield Marker.CUT_COMPRESSED
        return
    if plan.unterminated:
        yield Marker.NO_CLOSE
    if not plan.omit_post:
        yield stream.post_query_info(announce_extra=plan.undercount)


def wait_for_hangup(conn: socket.socket, stop: threading.Event) -> None:
    """Do nothing until the client closes the connection or the server stops."""
    while not stop.wait(0.05):
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable and not conn.recv(1, socket.MSG_PEEK):
                return
        except (OSError, ValueError):
            return


INVALID_JSON_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>\r\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\r\n"
)

_BOMB_BLOCK = 1 << 20
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@functools.lru_cache(maxsize=2)
def _bomb_block(filler: int) -> bytes:
    """1 MiB of `filler`, raw-deflated and full-flushed: a self-contained, repeatable segment."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(bytes([filler]) * _BOMB_BLOCK) + c.flush(zlib.Z_FULL_FLUSH)


def gzip_bomb(prefix: bytes, size: int, suffix: bytes, filler: int = 0x20) -> Iterator[bytes]:
    """A valid gzip stream of prefix + size filler bytes + suffix, never materialised."""
    yield _GZIP_HEADER
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    yield c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    block, raw = _bomb_block(filler), bytes([filler]) * _BOMB_BLOCK
    full, rest = divmod(size, _BOMB_BLOCK)
    for _ in range(full):
        crc = zlib.crc32(raw, crc)
        yield block
    tail = bytes([filler]) * rest + suffix
    crc = zlib.crc32(tail, crc)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    total = len(prefix) + size + len(suffix)
    yield c.compress(tail) + c.flush(zlib.Z_FINISH) + struct.pack("<II", crc, total & 0xFFFFFFFF)
