"""Tokens as the auth module issues and reads them, kept apart from the request side.

The verified-claims record and its in-process cache, minting, and building the
token codec from :class:`~heygen_conventions.settings.Settings`. Public names
are re-exported by :mod:`heygen_conventions.auth`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

from pydantic import SecretStr

from heygen_conventions._jwt import ConfigurationError, JWTCodec, TokenError
from heygen_conventions.settings import Settings

__all__ = [
    "SCOPE_TOKEN",
    "ClaimsCache",
    "TokenClaims",
    "TokenType",
    "claims_from_payload",
    "codec_from_settings",
    "create_access_token",
    "create_refresh_token",
    "mint",
    "shared_codec",
]

TokenType = Literal["access", "refresh"]

# Claims minting sets; extra_claims may not override them.
_RESERVED_CLAIMS = frozenset(
    {"sub", "exp", "iat", "nbf", "jti", "iss", "aud", "type", "roles", "scope", "sid"}
)
#: RFC 6749 section 3.3 scope-token characters.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified claims of a token. Times are seconds since the epoch.

    ``roles`` and ``scopes`` are what the token says; :func:`require_roles`
    reads roles from the loaded user instead, never from here.
    """

    subject: str
    token_type: TokenType
    jti: str
    issued_at: float
    expires_at: float
    not_before: float | None
    issuer: str | None
    audience: tuple[str, ...]
    roles: tuple[str, ...]
    scopes: frozenset[str]
    #: Every claim as sent, read-only (custom claims included).
    claims: Mapping[str, Any]


def claims_from_payload(payload: dict[str, Any]) -> TokenClaims:
    """The record of a payload the codec verified; TokenError for a bad type, roles, scope, iss."""
    token_type = payload.get("type")
    if token_type not in ("access", "refresh"):
        raise TokenError("invalid_type")
    roles = payload.get("roles", [])
    if type(roles) is not list or not all(type(r) is str for r in roles):
        raise TokenError("invalid_roles")
    scope = payload.get("scope", "")
    if type(scope) is not str:
        raise TokenError("invalid_scope")
    iss = payload.get("iss")
    if iss is not None and type(iss) is not str:
        raise TokenError("invalid_iss")
    aud = payload.get("aud")
    nbf = payload.get("nbf")
    return TokenClaims(
        subject=payload["sub"],
        token_type=token_type,
        jti=payload["jti"],
        issued_at=float(payload["iat"]),
        expires_at=float(payload["exp"]),
        not_before=None if nbf is None else float(nbf),
        issuer=iss,
        audience=() if aud is None else (aud,) if type(aud) is str else tuple(aud),
        roles=tuple(roles),
        # RFC 6749 section 3.3: scope-tokens are separated by %x20 alone; str.split()
        # would also split on tabs and Unicode spaces, making one scope several.
        scopes=frozenset(part for part in scope.split(" ") if part),
        claims=MappingProxyType(payload),
    )


def token_id(issued_ms: int) -> str:
    """A fresh ``jti``: a UUIDv7 (as 32 hex digits) carrying the issue time in milliseconds.

    ``iat`` counts whole seconds; the id tells a cutoff made within that
    second whether the token came before or after it.
    """
    value = (issued_ms & 0xFFFF_FFFF_FFFF) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return f"{value:032x}"


def issued_ms(claims: TokenClaims) -> int:
    """When the token was issued, in milliseconds since the epoch.

    Exact for the ids :func:`token_id` makes (checked against ``iat``); for
    any other ``jti`` the start of the ``iat`` second, so that a cutoff made
    within that second refuses the token rather than let it through.
    """
    start = int(claims.issued_at) * 1000
    stamped = _timed_id_ms(claims.jti)
    if stamped is not None and start <= stamped < start + 1000:
        return stamped
    return start


def _timed_id_ms(value: object) -> int | None:
    """The milliseconds a :func:`token_id` carries; None for anything else."""
    if type(value) is not str or len(value) != 32 or value[12] != "7":
        return None
    head = value[:12]
    # int(x, 16) also takes "+", "-", "_", spaces and "0x": 12 hex digits only.
    if not head.isascii() or not all(digit in _HEX_DIGITS for digit in head):
        return None
    return int(head, 16)


_HEX_DIGITS = frozenset("0123456789abcdef")


def session_id(claims: TokenClaims) -> str:
    """The id of the login ``claims`` belong to: its ``sid``, or the token's own ``jti``.

    Tokens minted with ``session=`` (a refresh) keep the session of the token
    they replace, so a cutoff refuses them as it refuses that login's first token.
    """
    sid = claims.claims.get("sid")
    return sid if isinstance(sid, str) and _timed_id_ms(sid) is not None else claims.jti


def session_started_ms(claims: TokenClaims) -> int:
    """When the login ``claims`` belong to began, in ms: what a per-user cutoff compares.

    A refreshed token counts from its session's first token, not from its own
    ``iat``: otherwise a refresh in flight while the user logs out everywhere
    would hand the thief a token issued after the cutoff.
    """
    issued = issued_ms(claims)
    started = _timed_id_ms(claims.claims.get("sid"))
    return started if started is not None and started <= issued else issued


class ClaimsCache:
    """Verified claims by token digest, bounded, never past the token's own expiry."""

    __slots__ = ("_entries", "_max_size")

    def __init__(self, max_size: int) -> None:
        self._entries: dict[bytes, tuple[TokenClaims, float]] = {}
        self._max_size = max_size

    def get(self, digest: bytes, now: float) -> TokenClaims | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[digest]
            return None
        return entry[0]

    def put(self, digest: bytes, claims: TokenClaims, valid_until: float) -> None:
        if self._max_size <= 0:
            return
        if len(self._entries) >= self._max_size:
            # Oldest first: dicts keep insertion order, and old entries expire first.
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (claims, valid_until)

    def __len__(self) -> int:
        return len(self._entries)


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _codec_arguments(settings: Settings) -> dict[str, Any]:
    return {
        "algorithms": tuple(settings.jwt_algorithms),
        "signing_algorithm": settings.jwt_algorithm,
        "secret": _secret(settings.jwt_secret),
        "verification_secrets": {
            kid: value.get_secret_value()
            for kid, value in settings.jwt_verification_secrets.items()
        },
        "private_key": _secret(settings.jwt_private_key),
        "public_keys": dict(settings.jwt_public_keys),
        "signing_kid": settings.jwt_signing_kid,
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
        "leeway": settings.jwt_leeway.total_seconds(),
        "max_lifetime": settings.jwt_max_token_lifetime.total_seconds(),
        "max_token_bytes": settings.jwt_max_token_bytes,
    }


def _check_lifetimes(settings: Settings) -> None:
    longest = settings.jwt_max_token_lifetime
    for name in ("jwt_access_token_ttl", "jwt_refresh_token_ttl"):
        ttl: timedelta = getattr(settings, name)
        if ttl.total_seconds() < 1 or ttl > longest:
            raise ConfigurationError(
                f"{name} ({ttl}) must be at least one second and at most "
                f"jwt_max_token_lifetime ({longest})"
            )


def codec_from_settings(settings: Settings, clock: Callable[[], float] = time.time) -> JWTCodec:
    """The codec ``settings`` describe; raises ConfigurationError for unsafe ones."""
    _check_lifetimes(settings)
    return JWTCodec(**_codec_arguments(settings), clock=clock)


_CODECS: dict[tuple[Any, ...], JWTCodec] = {}
_CODECS_MAX = 8


def shared_codec(settings: Settings) -> JWTCodec:
    """The codec for ``settings``, built once per distinct setup (minting outside a request)."""
    arguments = _codec_arguments(settings)
    fingerprint = tuple(
        (name, tuple(sorted(value.items())) if isinstance(value, dict) else value)
        for name, value in arguments.items()
    )
    codec = _CODECS.get(fingerprint)
    if codec is None:
        codec = codec_from_settings(settings)
        if len(_CODECS) >= _CODECS_MAX:
            del _CODECS[next(iter(_CODECS))]
        _CODECS[fingerprint] = codec
    return codec


def _seconds(value: float) -> str:
    """``2592000``, ``0.5``: seconds as a person writes them (``nan`` stays ``nan``)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def mint(
    codec: JWTCodec,
    settings: Settings,
    token_type: TokenType,
    subject: object,
    roles: Iterable[str],
    scopes: Iterable[str],
    expires_in: timedelta | float | None,
    extra_claims: Mapping[str, Any] | None,
    session: TokenClaims | None = None,
) -> str:
    if subject is None or isinstance(subject, bytes | bytearray):
        # str(None) is "None": a token for a user of that name (an unflushed object's id).
        raise ValueError("subject must be the user's id, not None or bytes")
    sub = str(subject)
    if not sub:
        raise ValueError("subject must not be empty")
    if session is not None and session.subject != sub:
        raise ValueError("session= must be the claims of a token of the same subject")
    default_ttl = {
        "access": settings.jwt_access_token_ttl,
        "refresh": settings.jwt_refresh_token_ttl,
    }[token_type]
    if expires_in is None:
        ttl = default_ttl.total_seconds()
    elif isinstance(expires_in, timedelta):
        ttl = expires_in.total_seconds()
    elif isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        ttl = float(expires_in)
    else:
        raise TypeError(
            f"expires_in must be a timedelta or seconds, not {type(expires_in).__name__}"
        )
    # exp and iat are whole seconds: a shorter lifetime would mint exp == iat.
    if not 1 <= ttl <= codec.max_lifetime:  # False for NaN too
        raise ValueError(
            f"expires_in must be at least one second and at most jwt_max_token_lifetime "
            f"({_seconds(codec.max_lifetime)} seconds), got {_seconds(ttl)} seconds"
        )
    for name, value in (("roles", roles), ("scopes", scopes)):
        if isinstance(value, str | bytes):
            raise TypeError(f"{name} must be a list of strings, not one string: [{value!r}]")
    role_list = [str(r.value) if isinstance(r, Enum) else str(r) for r in roles]
    scope_list = list(scopes)
    for scope in scope_list:
        if not isinstance(scope, str) or SCOPE_TOKEN.fullmatch(scope) is None:
            raise ValueError(f"invalid scope {scope!r}: no spaces, quotes or backslashes")
    extra = dict(extra_claims or {})
    clash = _RESERVED_CLAIMS.intersection(extra)
    if clash:
        raise ValueError(f"extra_claims may not set the registered claims {sorted(clash)}")
    issued_ms = int(codec.clock() * 1000)
    now = issued_ms // 1000
    claims: dict[str, Any] = {
        **extra,
        "sub": sub,
        "type": token_type,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl),
        "jti": token_id(issued_ms),
    }
    if session is not None:
        claims["sid"] = session_id(session)
    if codec.issuer is not None:
        claims["iss"] = codec.issuer
    if codec.audience is not None:
        claims["aud"] = codec.audience
    if role_list:
        claims["roles"] = role_list
    if scope_list:
        claims["scope"] = " ".join(scope_list)
    return codec.encode(claims)


# --- issuing outside a request ---------------------------------------------------


def create_access_token(
    subject: object,
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    expires_in: timedelta | float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> str:
    """An access token signed with ``settings`` (the environment's when omitted).

    For scripts and tests; in a route, ``Depends(get_auth)`` gives the app's
    own :meth:`JWTAuth.create_access_token`.
    """
    settings = settings if settings is not None else Settings()
    codec = shared_codec(settings)
    return mint(codec, settings, "access", subject, roles, scopes, expires_in, extra_claims)


def create_refresh_token(
    subject: object,
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    expires_in: timedelta | float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> str:
    """A refresh token signed with ``settings``; see :func:`create_access_token`."""
    settings = settings if settings is not None else Settings()
    codec = shared_codec(settings)
    return mint(codec, settings, "refresh", subject, roles, scopes, expires_in, extra_claims)
