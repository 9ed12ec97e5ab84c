"""OAuth 2.0 client-credentials token endpoint and the bearer-token check."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote_plus

REQUIRED_SCOPE = "export:v3"


@dataclass(frozen=True)
class TokenReply:
    """Status and JSON body the token endpoint answers with."""

    status: int
    body: dict[str, Any]


class TokenStore:
    """Issues random access tokens and checks bearer tokens (static or live OAuth)."""

    def __init__(
        self,
        static_token: str | None,
        client_id: str | None,
        client_secret: str | None,
        ttl: float,
    ) -> None:
        self._static = static_token
        self._client_id, self._client_secret, self.ttl = client_id, client_secret, ttl
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()

    def check(self, authorization: str | None) -> bool:
        """True when the Authorization header carries the static token or a live OAuth token."""
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        if self._static is not None and hmac.compare_digest(token.encode(), self._static.encode()):
            return True
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if time.monotonic() >= expiry:
                del self._tokens[token]
                return False
            return True

    def expire_all(self) -> None:
        """Make every issued token expire now (for tests)."""
        with self._lock:
            self._tokens.clear()

    def issue(self, authorization: str | None, form_body: bytes) -> TokenReply:
        """Handle a token request (form body; client credentials in the form or HTTP Basic)."""
        try:
            form = {
                k: v[0] for k, v in parse_qs(form_body.decode(), keep_blank_values=True).items()
            }
        except UnicodeDecodeError:
            return TokenReply(400, {"error": "invalid_request"})
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return TokenReply(401, {"error": "invalid_client"})
            user, _, password = raw.partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        if form.get("grant_type") != "client_credentials":
            return TokenReply(400, {"error": "unsupported_grant_type"})
        if not self._client_ok(client_id, client_secret):
            return TokenReply(401, {"error": "invalid_client"})
        if REQUIRED_SCOPE not in (form.get("scope") or "").split():
            return TokenReply(400, {"error": "invalid_scope"})
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + self.ttl
        return TokenReply(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.ttl) if float(self.ttl).is_integer() else self.ttl,
                "scope": REQUIRED_SCOPE,
            },
        )

    def _client_ok(self, client_id: str | None, client_secret: str | None) -> bool:
        if self._client_id is None or self._client_secret is None:
            return False
        if client_id is None or client_secret is None:
            return False
        return hmac.compare_digest(client_id.encode(), self._client_id.encode()) and (
            hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        )
