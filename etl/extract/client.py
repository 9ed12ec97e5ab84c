"""The Export API v3 client: one POST per window, parsed while it downloads."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from importlib.util import find_spec
from typing import Any

import requests
import urllib3

from etl import __version__
from etl.config import ApiSettings
from etl.errors import ConfigError
from etl.extract.auth import StaticToken, TokenProvider, make_token_provider
from etl.extract.courtesy import RequestGate
from etl.extract.errors import (
    AuthError,
    FatalAPIError,
    RequestRejected,
    RetriableAPIError,
    connection_cause,
    redirected_to,
)
from etl.extract.stream import ExportStream
from etl.secrets import scrub
from etl.windows import Window

log = logging.getLogger(__name__)


def request_body(window: Window, filters: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: explicit-offset bounds, then the filters passed through unchanged."""
    body: dict[str, Any] = {k: v for k, v in filters.items() if k not in ("from", "to")}
    body["from"] = window.start.astimezone(UTC).isoformat()
    body["to"] = window.end.astimezone(UTC).isoformat()
    return body


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds, from delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    from datetime import datetime

    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


# An error response's body is read this far, for its message: a failing server may send a
# page of any size, cut it off, stall in it or send it corrupt, and none of that may turn the
# status it answered with into another error.
_ERROR_BODY_BYTES = 65536


def _server_message(response: requests.Response) -> str:
    try:
        if response.raw is not None and not response.raw.closed:
            raw = response.raw.read(_ERROR_BODY_BYTES, decode_content=True) or b""
        else:
            raw = response.content[:_ERROR_BODY_BYTES]
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        log.debug("could not read the body of an HTTP %s: %r", response.status_code, exc)
        return ""
    # Secrets go before the text is shortened: a server may quote the token it refused, and a
    # token cut in two is no longer one that `scrub` knows (the log's own scrub comes too late).
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        text = scrub(raw.decode("utf-8", "replace"), cut=len(raw) >= _ERROR_BODY_BYTES)
        return text[:200].strip()
    if isinstance(body, dict):
        return scrub(str(body.get("message") or body.get("error") or ""))[:500]
    return ""


def validate_response(response: requests.Response, window: Window) -> None:
    """Map an HTTP status to the error that says what to do; return quietly on 200."""
    status = response.status_code
    if status == 200:
        return
    message = _server_message(response)
    detail = f": {message}" if message else ""
    if status in (401, 403):
        raise AuthError(status, message, window)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RetriableAPIError(
            f"the API is rate limiting (HTTP 429, Retry-After {response.headers.get('Retry-After', 'absent')}){detail}",
            window,
            retry_after=retry_after,
        )
    if status >= 500 or status == 408:
        raise RetriableAPIError(
            f"the API failed with HTTP {status}{detail}",
            window,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if 300 <= status < 400:
        raise RequestRejected(
            f"the API answered HTTP {status}, a redirect{redirected_to(response)}, which the "
            "export never follows (a sign-in page, or http:// for an https:// site?): check "
            "api.url",
            window,
        )
    if status in (400, 404, 405, 422):
        raise RequestRejected(
            f"the API rejected the request with HTTP {status}{detail}; check api.url and the "
            "request filters in the config",
            window,
        )
    raise FatalAPIError(f"unexpected HTTP {status} from the export endpoint{detail}", window)


class ExportClient:
    """Opens export streams for windows, with auth, timeouts and TLS verification."""

    def __init__(
        self,
        api: ApiSettings,
        session: requests.Session | None = None,
        *,
        max_pause: float = 120.0,
    ) -> None:
        """`max_pause`: the longest Retry-After every window waits for (retry.max_wait)."""
        self._api = api
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"convo-etl/{__version__}"
        # Never honour an environment setting that would switch verification off; the proxy
        # is the one thing taken from it, in the settings (api.proxy).
        self._session.trust_env = False
        if api.proxy and api.proxy.startswith("socks") and find_spec("socks") is None:
            raise ConfigError(
                "the proxy (HTTPS_PROXY, HTTP_PROXY or api.proxy) is a SOCKS proxy, which needs "
                "PySocks: pip install 'requests[socks]'"
            )
        self._verify: bool | str = str(api.ca_bundle) if api.ca_bundle else True
        self._session.verify = self._verify
        self.tokens: TokenProvider = make_token_provider(api, self._session)
        self._exact_windows: set[Window] = set()
        # Shared by the windows a run loads at once (etl.extract.courtesy).
        self.gate = RequestGate(api.max_concurrency, max_pause=max_pause)

    def __repr__(self) -> str:
        return f"ExportClient(url={self._api.url!r})"

    def close(self) -> None:
        self._session.close()

    def open(
        self, window: Window, filters: Mapping[str, Any] | None = None, *, spool: bool = False
    ) -> ExportStream:
        """POST the window's query and return the stream positioned after query_info;
        `spool`: with the whole body downloaded first (ExportStream.from_response)."""
        body = request_body(window, self._api.filters if filters is None else filters)
        slot = self.gate.acquire()  # in flight from the POST until the body is read
        try:
            response = self._post(window, body)
            if response.status_code == 401 and not isinstance(self.tokens, StaticToken):
                # An OAuth token can be revoked or expire early: renew it once and try again.
                # (A static token cannot get better by asking again: the 401 is final.)
                response.close()
                self.tokens.invalidate()
                response = self._post(window, body)
        except BaseException:
            slot.release()
            raise
        try:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if response.status_code == 429:
                self.gate.refused(retry_after)
            elif response.status_code >= 500 and retry_after is not None:
                self.gate.asked_to_wait(retry_after)
            validate_response(response, window)
            stream = ExportStream.from_response(
                response,
                window,
                self._api.max_decompressed_bytes,
                pure_python=window in self._exact_windows,
                spool=spool,
                on_close=slot.release,
            )
        except BaseException:
            response.close()
            slot.release()
            raise
        if spool:
            slot.release()  # the body is on disk: the server is done with this request
        return stream

    def parse_exactly(self, window: Window) -> None:
        """Read `window` with the exact (pure-Python) parser from now on (ExactParseNeeded)."""
        self._exact_windows.add(window)

    def _post(self, window: Window, body: dict[str, Any]) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.tokens.bearer()}",
            "Accept-Encoding": "gzip, deflate",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            return self._session.post(
                self._api.export_url,
                data=json.dumps(body),
                headers=headers,
                stream=True,
                timeout=(self._api.connect_timeout, self._api.read_timeout),
                verify=self._verify,
                proxies=self._api.proxies_for(self._api.export_url),
                # A redirected POST comes back a GET (a sign-in page's HTML, say): said, not
                # followed (validate_response).
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            cause = (
                "certificate verification failed" if _is_cert_error(exc) else "TLS handshake failed"
            )
            advice = (
                f"check that api.ca_bundle ({self._api.ca_bundle}) holds the CA that signed the "
                "site's certificate"
                if self._api.ca_bundle
                else "if the site uses a private CA, set api.ca_bundle to its PEM file"
            )
            raise FatalAPIError(
                f"{cause} for {self._api.url}; certificates are always verified: {advice}",
                window,
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise RetriableAPIError(
                f"connecting to {self._api.url} timed out (api.connect_timeout={self._api.connect_timeout}s)",
                window,
            ) from None
        except requests.exceptions.ReadTimeout:
            raise RetriableAPIError(
                f"{self._api.url} accepted the request but sent no response within "
                f"api.read_timeout={self._api.read_timeout}s",
                window,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise RetriableAPIError(
                f"could not connect to {self._api.url} ({connection_cause(exc)})", window
            ) from None
        except requests.RequestException as exc:
            raise RetriableAPIError(
                f"request to {self._api.url} failed ({type(exc).__name__})", window
            ) from None


def _is_cert_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = (
            seen.__cause__
            or seen.__context__
            or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        )
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)
