"""Bearer credentials: a static token, or OAuth 2.0 client credentials cached until near expiry."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import requests

from etl.config import ApiSettings, OAuthSettings
from etl.extract.errors import (
    AuthError,
    FatalAPIError,
    RequestRejected,
    RetriableAPIError,
    connection_cause,
    redirected_to,
)
from etl.secrets import Secret, register

# Renew this long before the server's expiry, so a token never dies mid-request.
_EXPIRY_MARGIN = 30.0


class TokenProvider(Protocol):
    def bearer(self) -> str: ...

    def invalidate(self) -> None: ...


class StaticToken:
    """A long-lived API token from the environment or a secret file."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def bearer(self) -> str:
        return self._token.reveal()

    def invalidate(self) -> None:
        """A static token cannot be renewed; the 401 surfaces as an auth error."""

    def __repr__(self) -> str:
        return "StaticToken(**********)"


class OAuthClientCredentials:
    """Client-credentials grant; caches the access token and renews it before it expires."""

    def __init__(
        self,
        settings: OAuthSettings,
        session: requests.Session,
        timeout: tuple[float, float],
        proxies: dict[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._proxies = proxies or {}
        self._session = session
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"OAuthClientCredentials(token_url={self._settings.token_url!r}, client_id={self._settings.client_id!r})"

    def bearer(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, self._expires_at = self._fetch()
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[str, float]:
        s = self._settings
        try:
            response = self._session.post(
                s.token_url,
                data={"grant_type": "client_credentials", "scope": s.scope},
                auth=(s.client_id, s.client_secret.reveal()),
                timeout=self._timeout,
                allow_redirects=False,  # the client's credentials go to this URL only
                proxies=self._proxies,
            )
        except requests.RequestException as exc:
            raise RetriableAPIError(
                f"could not reach the OAuth token endpoint {s.token_url} ({connection_cause(exc)})"
            ) from None
        self.fetches += 1
        if response.status_code in (400, 401, 403):
            raise AuthError(response.status_code, _oauth_error(response))
        if response.status_code >= 500 or response.status_code == 429:
            raise RetriableAPIError(
                f"the OAuth token endpoint answered HTTP {response.status_code}"
            )
        if response.status_code != 200:
            raise RequestRejected(
                f"the OAuth token endpoint {s.token_url} answered HTTP {response.status_code}"
                f"{redirected_to(response) if 300 <= response.status_code < 400 else ''}: check "
                "api.oauth.token_url"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            ttl = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise FatalAPIError("the OAuth token endpoint did not return an access_token") from None
        register(token)
        return token, time.monotonic() + max(ttl - min(_EXPIRY_MARGIN, ttl / 2), 0.0)


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or body.get("message") or "")
    return ""


def make_token_provider(api: ApiSettings, session: requests.Session) -> TokenProvider:
    """The provider the settings ask for; OAuth wins when both are configured."""
    if api.oauth is not None:
        return OAuthClientCredentials(
            api.oauth,
            session,
            (api.connect_timeout, api.read_timeout),
            api.proxies_for(api.oauth.token_url),
        )
    if api.token is not None:
        return StaticToken(api.token)
    raise FatalAPIError("no API credentials configured")
