"""Secrets never reach storage or logs: raw API keys and bearer tokens become a stable keyed hash.

The hash is HMAC-SHA256 under a key only the operator holds (``hash_key`` in config or the
``RAMPARTS_HASH_KEY`` environment variable), so the same key always maps to the same
principal id across workers and restarts, and the id cannot be reversed or brute-forced by
someone who reads the store without the key. The id keeps a short non-secret hint (``sk-``)
so an analyst can tell key families apart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
from functools import lru_cache

# Used only when no key is configured; `ramparts` warns once per process when it is.
DEVELOPMENT_HASH_KEY = b"ramparts-development-hash-key-set-RAMPARTS_HASH_KEY"

HASH_PREFIX = "key:"

_BEARER_RE = re.compile(r"^(?:bearer|token|basic)\s+", re.IGNORECASE)

# Free text (dead-letter raw bytes, URL query strings) can carry a secret anywhere; these
# are the spellings gateways and SDKs use. Each match keeps its label and replaces the value.
_SECRET_IN_TEXT = re.compile(
    rb"(?P<label>(?:authorization|proxy-authorization)\s*[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|token|basic)\s+"
    rb"|(?:x-api-key|api[-_]?key|apikey|access[-_]token|token|secret|password)[\"']?\s*[:=]\s*[\"']?"
    rb"|bearer\s+)"
    rb"(?P<value>[A-Za-z0-9._~+/=-]{6,})",
    re.IGNORECASE,
)
# Every spelling above contains one of these; a cheap test that skips the full patterns for
# the common text that holds no credential at all.
_MAY_HOLD_SECRET = re.compile(rb"auth|key|token|secret|passw|bearer|k-", re.IGNORECASE)
_SK_TOKEN = re.compile(rb"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}")

_SECRET_QUERY_PARAMS = {"key", "api_key", "apikey", "api-key", "token", "access_token", "auth", "secret", "password", "sig", "signature"}


class Hasher:
    """Keyed, stable hashing of secrets into principal ids.

    >>> h = Hasher(b"k")
    >>> h.principal("Bearer sk-live-abcdef") == h.principal("sk-live-abcdef")
    True
    >>> h.principal("sk-live-abcdef").startswith("key:sk-")
    True
    """

    def __init__(self, key: bytes | str | None = None):
        if key is None:
            env = os.environ.get("RAMPARTS_HASH_KEY")
            key = env.encode() if env else None
        self.is_development_key = key is None
        if isinstance(key, str):
            key = key.encode()
        self._key = key or DEVELOPMENT_HASH_KEY
        self.secret_hash = lru_cache(maxsize=65536)(self._secret_hash)

    def warn_if_development_key(self) -> None:
        if self.is_development_key:
            _warn_once()

    def _secret_hash(self, secret: str) -> str:
        digest = hmac.new(self._key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:24]
        hint = secret[:3] if secret[:3] in ("sk-", "pk-", "rk-") else ""
        return f"{HASH_PREFIX}{hint}{digest}"

    def principal(self, raw: str) -> str:
        """A credential as sent (``Bearer X``, ``X``) to its keyed id; already-hashed ids pass."""
        raw = raw.strip()
        if raw.startswith(HASH_PREFIX):
            return raw
        return self.secret_hash(_BEARER_RE.sub("", raw, count=1).strip())

    def scrub_bytes(self, raw: bytes) -> bytes:
        """Replace anything that looks like a credential inside free text by its keyed id."""
        if not raw or not _MAY_HOLD_SECRET.search(raw):
            return raw

        def labelled(m: re.Match) -> bytes:
            return m.group("label") + self.secret_hash(m.group("value").decode("latin-1")).encode()

        raw = _SECRET_IN_TEXT.sub(labelled, raw)
        return _SK_TOKEN.sub(lambda m: self.secret_hash(m.group(0).decode("latin-1")).encode(), raw)

    def scrub_text(self, text: str) -> str:
        return self.scrub_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")

    def scrub_path(self, path: str) -> str:
        """URL paths keep their shape; secret query parameters (``?key=...``) lose their value."""
        q = path.find("?")
        if q < 0:
            return path
        parts = path[q + 1:].split("&")
        changed = False
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if eq and value and name.lower() in _SECRET_QUERY_PARAMS:
                parts[i] = f"{name}={self.secret_hash(value)}"
                changed = True
        return path[: q + 1] + "&".join(parts) if changed else path


_warned = False


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        print(
            "ramparts: warning: no hash key configured (set RAMPARTS_HASH_KEY or hash_key); "
            "credentials are hashed with the built-in development key",
            file=sys.stderr,
        )
