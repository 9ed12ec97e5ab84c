"""Saved export files (`.json` or `.json.gz`) read through the same stream parser as the API."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

from etl.errors import ConfigError
from etl.extract.errors import BrokenStreamError
from etl.extract.stream import ExportStream


class _CountingReader:
    """Counts the bytes read from the (decompressed) file for the run log."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self._name = name
        self.bytes_in = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise BrokenStreamError(
                f"the compressed file is truncated or corrupt ({exc})", self._name
            ) from None
        self.bytes_in += len(data)
        return data


def open_export_file(path: Path, *, pure_python: bool = False) -> ExportStream:
    """A stream over a saved export: a full array `[query_info, conversation…, post_query_info]`."""
    try:
        raw: IO[bytes] = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # type: ignore[assignment]
    except OSError as exc:
        raise ConfigError(f"cannot open export file {path}: {exc.strerror or exc}") from None
    reader = _CountingReader(raw, str(path))
    try:
        return ExportStream(
            reader, None, on_close=raw.close, source=str(path), pure_python=pure_python
        )
    except BaseException:
        raw.close()
        raise
