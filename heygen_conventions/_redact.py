"""Keep secrets out of log lines: by key at any depth, and inside free text."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

#: Keys whose values never reach a log line (compared case-insensitively,
#: ``-`` and `` `` read as ``_``; ``db_password`` or ``X-Api-Key`` match
#: through their last part).
DEFAULT_REDACTED_KEYS: frozenset[str] = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "authorization",
        "client_secret",
        "cookie",
        "id_token",
        "jwt",
        "passwd",
        "password",
        "private_key",
        "proxy_authorization",
        "refresh_token",
        "secret",
        "secret_key",
        "set_cookie",
        "token",
    }
)

REDACTED = "[REDACTED]"

# Nested values deeper than this are replaced rather than walked: a cycle or a
# hostile structure must not cost unbounded time, and what is not walked is
# not logged.
_MAX_DEPTH = 16
_MAX_REPR = 4096
_KEY_CACHE_SIZE = 4096
_CLEAN_CACHE_SIZE = 4096
_MAX_CLEAN_LENGTH = 256

_SCALARS = frozenset({int, float, bool, type(None)})
_SEQUENCES = (list, tuple, set, frozenset)
_BYTES = (bytes, bytearray, memoryview)

# Structlog keys holding exception objects the renderer formats itself.
_UNWALKED_KEYS = frozenset({"exc_info"})

_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@]+):[^\s@/?#]*@")


def _normalise(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


class Redactor:
    """A structlog processor that masks secrets in the event dict.

    Values under secret keys are replaced with ``[REDACTED]`` in dicts, lists
    and ``(name, value)`` pairs at any depth (nested containers are copied,
    never mutated). Every string is scrubbed of bearer tokens, JWTs, URL
    passwords and ``key=value`` / ``key: value`` pairs naming a secret key.
    """

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> None:
        if isinstance(keys, str):
            raise TypeError("redact must be an iterable of key names, not a single str")
        normal = frozenset(_normalise(k) for k in keys if k and k.strip())
        self._keys = normal
        self._suffixes = tuple("_" + k for k in normal)
        self._key_cache: dict[object, bool] = {}
        # Two generations: when the young one fills up it becomes the old one,
        # so strings that repeat survive while one-off values (ids) churn.
        self._clean: set[str] = set()
        self._clean_old: set[str] = set()
        # Cheap substring checks decide whether the (slow) regex runs at all.
        self._stems = tuple(sorted({k.rsplit("_", 1)[-1] for k in normal}))
        plain = sorted((k for k in normal if not k.endswith("cookie")), key=len, reverse=True)
        cookies = sorted((k for k in normal if k.endswith("cookie")), key=len, reverse=True)
        self._pairs = _pair_pattern(plain, r"[^\s\"'&,;]+")
        # A cookie header's value runs to the end of the line (``a=1; b=2``).
        self._cookie_pairs = _pair_pattern(cookies, r"[^\r\n]+")

    def is_secret_key(self, key: object) -> bool:
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        if isinstance(key, str):
            text = key
        elif isinstance(key, bytes):
            text = key.decode("latin-1")
        else:
            text = str(key)
        name = _normalise(text)
        secret = name in self._keys or name.endswith(self._suffixes)
        if len(self._key_cache) >= _KEY_CACHE_SIZE:
            self._key_cache.clear()
        self._key_cache[key] = secret
        return secret

    def scrub(self, text: str) -> str:
        """``text`` with tokens, URL passwords and ``secret=value`` pairs masked."""
        if "eyJ" in text:
            text = _JWT.sub(REDACTED, text)
        if "earer" in text or "EARER" in text:
            text = _BEARER.sub(r"\1 " + REDACTED, text)
        if "://" in text and "@" in text:
            text = _URL_CREDENTIALS.sub(r"\1:" + REDACTED + "@", text)
        if ("=" in text or ":" in text) and self._stems:
            lowered = text.lower()
            for stem in self._stems:
                if stem in lowered:
                    if self._pairs is not None:
                        text = self._pairs.sub(r"\1\2" + REDACTED, text)
                    if self._cookie_pairs is not None:
                        text = self._cookie_pairs.sub(r"\1\2" + REDACTED, text)
                    break
        return text

    def __call__(self, logger: object, method_name: str, event_dict: Any) -> Any:
        secret_keys = self._key_cache
        clean = self._clean
        clean_old = self._clean_old
        for key, value in event_dict.items():
            secret = secret_keys.get(key)
            if secret is None:
                secret = self.is_secret_key(key)
            kind = type(value)
            if secret:
                if value is not None and key not in _UNWALKED_KEYS:
                    event_dict[key] = REDACTED
            elif kind is str:
                if value not in clean and value not in clean_old:
                    scrubbed = self.scrub(value)
                    if scrubbed == value:
                        self._remember_clean(value)
                    else:
                        event_dict[key] = scrubbed
            elif kind not in _SCALARS and key not in _UNWALKED_KEYS:
                event_dict[key] = self.redact_value(value, 1)
        return event_dict

    def _remember_clean(self, text: str) -> None:
        # Logger names, event templates, methods and hot paths repeat on every
        # line; remembering that they are clean skips the substring checks.
        if len(text) <= _MAX_CLEAN_LENGTH:
            if len(self._clean) >= _CLEAN_CACHE_SIZE:
                self._clean_old = self._clean
                self._clean = set()
            self._clean.add(text)

    def redact_value(self, value: Any, depth: int) -> Any:
        """A copy of ``value`` safe to log: secrets masked, odd objects made plain."""
        kind = type(value)
        if kind is str:
            return self.scrub(value)
        if kind in _SCALARS:
            return value
        if depth > _MAX_DEPTH:
            return "[TOO DEEP]"
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if isinstance(value, _SEQUENCES):
            return self._sequence(value, depth)
        if isinstance(value, _BYTES):
            return self.scrub(bytes(value).decode("utf-8", "backslashreplace"))
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {_safe_str(value)}")
        if isinstance(value, str):  # str subclasses (e.g. StrEnum members)
            return self.scrub(str.__str__(value))
        plain = _plain(value)
        if plain is not value:
            return self.redact_value(plain, depth + 1)
        # datetime, UUID, Decimal, enums and the like: the JSON renderer knows them.
        return value

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        try:
            items = list(value.items())
        except Exception:
            return {"unreadable": f"<{type(value).__qualname__}>"}
        return {
            k: REDACTED if self.is_secret_key(k) else self.redact_value(v, depth + 1)
            for k, v in items
        }

    def _sequence(self, value: Any, depth: int) -> list[Any]:
        items = list(value)
        # ("authorization", "Bearer ...") pairs: ASGI headers, httpx header lists.
        if (
            len(items) == 2
            and isinstance(items[0], (str, bytes))
            and not isinstance(value, (set, frozenset))
            and self.is_secret_key(items[0])
        ):
            first = items[0].decode("latin-1") if isinstance(items[0], bytes) else items[0]
            return [first, REDACTED]
        return [self.redact_value(item, depth + 1) for item in items]

    def json_default(self, value: Any) -> Any:
        """``default=`` for orjson: what it cannot serialise becomes a safe string."""
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, (set, frozenset)):
            return list(value)
        if isinstance(value, _BYTES):
            return self.scrub(bytes(value).decode("utf-8", "backslashreplace"))
        return self.scrub(safe_repr(value))


def _pair_pattern(keys: list[str], value: str) -> re.Pattern[str] | None:
    if not keys:
        return None
    names = "|".join(re.escape(k).replace("_", "[-_ ]?") for k in keys)
    return re.compile(
        rf"(?i)\b((?:[\w.-]*[-_.])?(?:{names}))([\"']?\s*[:=]\s*[\"']?)({value})",
    )


def _plain(value: Any) -> Any:
    """Pydantic models and dataclasses as dicts, so their secret fields are masked."""
    try:
        if isinstance(value, type):
            return value
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return dump()
        if dataclasses.is_dataclass(value):
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    except Exception:
        return safe_repr(value)
    return value


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


def safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"
    if len(text) > _MAX_REPR:
        return text[:_MAX_REPR] + "...[truncated]"
    return text
