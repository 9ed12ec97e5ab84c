"""Extract errors, by what the caller should do: retry the window, fix something, or report."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from etl.errors import DataError, EtlError, ExitCode
from etl.secrets import scrub
from etl.windows import Window

_AUTH_HINT = (
    "check the API token (ETL_API_TOKEN / OAuth client), that an OAuth token carries the "
    "scope export:v3, and that this machine's IP is on the site's IP allowlist"
)


class ExtractError(EtlError):
    """An error reading one window of the export."""

    def __init__(self, message: str, window: Window | str | None = None) -> None:
        self.window = window
        super().__init__(f"{where(window)}{message}")


def redirected_to(response: requests.Response) -> str:
    """ " to <where>" for a redirect's Location, without its query (it may carry a token), or
    "" without one."""
    location = response.headers.get("Location")
    if not location:
        return ""
    parts = urlsplit(urljoin(response.url or "", location))
    return f" to {scrub(urlunsplit((parts.scheme, parts.netloc, parts.path, '', '')))}"


def connection_cause(exc: BaseException) -> str:
    """Why a connection failed, in the words of the usual causes, else the exception's type."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "Connection reset",
        "timed out",
    ):
        if marker in text:
            return marker
    return type(exc).__name__


def where(window: Window | str | None) -> str:
    """The message prefix naming a window, or a file for saved exports."""
    if window is None:
        return ""
    if isinstance(window, Window):
        return f"window {window}: "
    return f"{window}: "


class RetriableAPIError(ExtractError):
    """The upstream failed in a way that may pass: retry the whole window."""

    exit_code = ExitCode.UPSTREAM
    retryable = True

    def __init__(
        self, message: str, window: Window | str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, window)
        self.retry_after = retry_after


class BrokenStreamError(RetriableAPIError):
    """The stream ended before it was complete: the window is incomplete and is not committed."""


class ExactParseNeeded(BrokenStreamError):
    """The export holds what the fast parser cannot represent exactly (an integer beyond 64 bits,
    a lone surrogate escape): read the window again with the exact (pure-Python) parser."""


class FatalAPIError(ExtractError):
    """The upstream refused in a way a retry will not fix."""

    exit_code = ExitCode.UPSTREAM


class AuthError(FatalAPIError):
    """401/403: credentials, scope or IP allowlist."""

    exit_code = ExitCode.AUTH

    def __init__(
        self, status: int, server_message: str, window: Window | str | None = None
    ) -> None:
        detail = f" (server said: {server_message})" if server_message else ""
        super().__init__(f"the API refused access with HTTP {status}{detail}; {_AUTH_HINT}", window)
        self.status = status


class RequestRejected(FatalAPIError):
    """400/404/422: the request itself is wrong (URL, filters, dates)."""

    exit_code = ExitCode.CONFIG


class ResponseTooLarge(FatalAPIError):
    """The decompressed body passed the configured cap (a gzip bomb, or a window far too big)."""


class ExportDataError(DataError):
    """Valid JSON of the wrong shape in the export."""

    def __init__(self, message: str, window: Window | str | None = None) -> None:
        self.window = window
        super().__init__(f"{where(window)}{message}")
