"""A file-like reader that undoes Content-Encoding incrementally, with a cap on output size."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from etl.extract.errors import BrokenStreamError, FatalAPIError, ResponseTooLarge
from etl.windows import Window

_READ_SIZE = 64 * 1024


def _decompressor(encoding: str, window: Window | None) -> zlib._Decompress | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # Servers disagree on whether "deflate" means zlib-wrapped or raw: accept both.
        return zlib.decompressobj(zlib.MAX_WBITS | 32)
    raise FatalAPIError(
        f"the API answered with Content-Encoding {encoding!r}, which this client does not "
        "decode; only gzip and deflate are supported",
        window,
    )


class DecodedReader:
    """`read(n)` over raw body chunks, decompressed, counting bytes in and out."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        content_encoding: str,
        max_bytes: int,
        window: Window | None = None,
    ) -> None:
        layers = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
        if len(layers) > 1:
            raise FatalAPIError(
                f"the API sent a body with {len(layers)} stacked Content-Encoding layers "
                f"({content_encoding}); refusing it as a decompression-bomb risk",
                window,
            )
        self._chunks = chunks
        self._window = window
        self._decomp = _decompressor(layers[0] if layers else "", window)
        self._gzip = bool(layers) and layers[0] in ("gzip", "x-gzip")
        self._max = max_bytes
        self._buffer = b""
        self._eof = False
        self.bytes_in = 0
        self.bytes_out = 0

    def read(self, size: int = -1) -> bytes:
        want = _READ_SIZE if size is None or size < 0 else size
        if len(self._buffer) < want and not self._eof:
            # Joined once: growing a bytes object piece by piece copies it again each time
            # (a quarter of a gigabyte for one 8 MiB read).
            parts, have = [self._buffer], len(self._buffer)
            while have < want and not self._eof:
                out = self._fill()
                parts.append(out)
                have += len(out)
            self._buffer = b"".join(parts)
        data, self._buffer = self._buffer[:want], self._buffer[want:]
        return data

    def _fill(self) -> bytes:
        try:
            return self._fill_once()
        except zlib.error as exc:
            raise BrokenStreamError(
                f"the compressed body is corrupt ({exc}); the window is incomplete",
                self._window,
            ) from None

    def _fill_once(self) -> bytes:
        """The next piece of decoded body (b"" at its end)."""
        decomp = self._decomp
        if decomp is not None and decomp.eof:
            # Checked first: past the end of the stream zlib keeps what follows it in
            # unconsumed_tail too, and decompressing that again never consumes it.
            return self._after_stream_end(decomp.unused_data)
        if decomp is not None and decomp.unconsumed_tail:
            out = decomp.decompress(decomp.unconsumed_tail, _READ_SIZE)
        else:
            chunk = next(self._chunks, b"")
            if not chunk:
                self._finish()
                return b""
            self.bytes_in += len(chunk)
            out = chunk if decomp is None else decomp.decompress(chunk, _READ_SIZE)
        self._count(out)
        return out

    def _after_stream_end(self, rest: bytes) -> bytes:
        """What follows the end of a gzip or deflate stream. A gzip body may hold further
        members (RFC 1952), decoded as one body, as `gzip -d` does; anything else after the
        end (a newline, padding) is ignored, as curl and urllib3 do: whether the body is whole
        is for its JSON to say (the closed array, post_query_info, the counts)."""
        while len(rest) < 2:  # enough to see a gzip header's magic bytes
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self.bytes_in += len(chunk)
            rest += chunk
        if self._gzip and rest.startswith(b"\x1f\x8b"):
            self._decomp = decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = decomp.decompress(rest, _READ_SIZE)
            self._count(out)
            return out
        self._eof = True
        return b""

    def _finish(self) -> None:
        self._eof = True
        decomp = self._decomp
        if decomp is None:
            return
        if not decomp.eof:
            raise BrokenStreamError(
                "the compressed body ended before the end of its gzip/deflate stream "
                "(truncated download); the window is incomplete",
                self._window,
            )

    def _count(self, out: bytes) -> None:
        self.bytes_out += len(out)
        if self.bytes_out > self._max:
            raise ResponseTooLarge(
                f"the decompressed body passed the cap of {self._max:,} bytes "
                "(api.max_decompressed_bytes); either a decompression bomb or a window far too "
                "large: use a smaller --window or raise the cap",
                self._window,
            )
