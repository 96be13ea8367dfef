"""JWT authentication for FastAPI routes: tokens, user dependencies, roles, scopes, revocation.

Register once how a token's subject becomes a user, then depend on the
module-level dependencies with no wrapper of your own::

    async def load_user(subject: str) -> User | None: ...

    install_auth(app, user_loader=load_user)

    @app.get("/me")
    async def me(user: User = Depends(get_current_user)) -> ...: ...

    @app.delete("/videos/{video_id}", dependencies=[Depends(require_admin_role)])
    async def delete_video(...) -> ...: ...

Every token that is not exactly valid answers 401 with ``WWW-Authenticate:
Bearer`` (RFC 6750 ``error="invalid_token"`` when a token was sent); a user
without the role or scope answers 403. The user loader is authoritative for
roles and activity, so a demoted or disabled user loses access at once, whatever
an older token says.

Revoked token ids and per-user cutoffs live in a :class:`CacheBackend`: the
one given to :func:`install_auth`, else the app's cache (``install_cache``)
unless that is an in-process ``MemoryCache``, else an in-process store that
only that process sees and that never evicts a revocation before it expires.
"""

import asyncio
import inspect
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from heygen_conventions._context import bind_request_context
from heygen_conventions._handlers import app_error_response
from heygen_conventions._jwt import (
    ConfigurationError,
    ExpiredTokenError,
    TokenError,
    token_digest,
)
from heygen_conventions._tokens import (
    SCOPE_TOKEN,
    ClaimsCache,
    TokenClaims,
    TokenType,
    claims_from_payload,
    codec_from_settings,
    create_access_token,
    create_refresh_token,
    mint,
    session_started_ms,
)
from heygen_conventions.cache import CacheBackend, MemoryCache
from heygen_conventions.errors import (
    AppError,
    AuthenticationError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from heygen_conventions.settings import Settings

__all__ = [
    "ADMIN_ROLE",
    "REFRESH_REUSE_WINDOW",
    "ConfigurationError",
    "JWTAuth",
    "TokenClaims",
    "TokenType",
    "UserLoader",
    "bearer_token",
    "create_access_token",
    "create_refresh_token",
    "ensure_owner_or_admin",
    "get_auth",
    "get_current_user",
    "get_optional_user",
    "get_token_claims",
    "install_auth",
    "require_admin_role",
    "require_roles",
    "require_scopes",
]

logger = logging.getLogger("heygen_conventions.auth")

_T = TypeVar("_T")

#: ``async def load_user(subject: str) -> User | None``.
UserLoader = Callable[[str], Awaitable[Any]]

#: The role :data:`require_admin_role` asks for.
ADMIN_ROLE = "admin"

#: Seconds after a refresh token is spent during which tokens issued to its user
#: are still refused when the spent token is replayed: covers the route that
#: spent it and is still minting the new pair (a concurrent double use).
REFRESH_REUSE_WINDOW = 5.0

#: ``app.state`` attribute holding the app's :class:`JWTAuth`.
STATE_KEY = "heygen_auth"
_CACHE_STATE_KEY = "heygen_cache"
_ERROR_FORMAT_STATE_KEY = "heygen_error_format"
# Per-request memo under ``request.state``: (user, claims) once authenticated.
_REQUEST_USER_KEY = "heygen_auth_user"

SCHEME_NAME = "BearerAuth"

_CHALLENGE_INVALID = 'Bearer error="invalid_token"'
_CHALLENGE_EXPIRED = 'Bearer error="invalid_token", error_description="The token has expired"'

# What a refresh token's jti entry holds once rotation spent it, followed by the
# time it was spent; ``revoke_token`` (logout) stores anything else.
_SPENT_PREFIX = b"spent:"


def _spent_at(value: bytes) -> float | None:
    """When rotation spent a refresh token, from its jti entry; None when revoked otherwise."""
    if not value.startswith(_SPENT_PREFIX):
        return None
    try:
        # ``spent:<time>:<nonce>``; entries written before the nonce are ``spent:<time>``.
        return float(value[len(_SPENT_PREFIX) :].split(b":", 1)[0])
    except ValueError:
        return -math.inf  # unreadable time: still spent, no extra window


def _timestamp(value: datetime | float) -> float:
    if isinstance(value, datetime):
        # A naive datetime is read in the host's zone: a naive UTC time (what a
        # DateTime column without time zone returns) would move a cutoff or a
        # revocation's expiry by the host's UTC offset, letting tokens through.
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "a naive datetime is ambiguous; pass an aware one (tzinfo=UTC) or a timestamp"
            )
        return value.timestamp()
    return float(value)


def _stored_cutoff(value: bytes) -> float:
    try:
        return float(value)
    except ValueError:
        return -math.inf  # unreadable: overwritten by the new cutoff


def _cutoff_ms(raw: bytes) -> int:
    """A stored cutoff (seconds, to the millisecond) in milliseconds; ValueError if unreadable."""
    seconds = float(raw)
    if not math.isfinite(seconds):
        raise ValueError(f"cutoff is not a time: {raw!r}")
    return round(seconds * 1000)


def _attribute(user: Any, name: str) -> Any:
    if isinstance(user, Mapping):
        return user.get(name)
    return getattr(user, name, None)


def _role_name(role: Any) -> str:
    if isinstance(role, Enum):
        return str(role.value)
    if isinstance(role, str):
        return role
    name = getattr(role, "name", None)
    return name if isinstance(name, str) else str(role)


def _user_roles(user: Any) -> frozenset[str]:
    """The roles the loaded user has now: ``roles`` (iterable) or ``role``."""
    roles = _attribute(user, "roles")
    if roles is None:
        role = _attribute(user, "role")
        roles = () if role is None else (role,)
    elif isinstance(roles, str | Enum):
        roles = (roles,)
    elif isinstance(roles, Mapping):
        # {"admin": False} would grant its keys: a role table is not a list of roles.
        raise TypeError("a user's roles must be a list of role names, not a mapping")
    return frozenset(_role_name(role) for role in roles)


def _state_dict(app: FastAPI) -> dict[str, Any]:
    state: dict[str, Any] | None = getattr(app.state, "_state", None)
    return state if state is not None else vars(app.state)


class JWTAuth:
    """An application's token rules, user loader, claims cache and revocation store.

    :func:`install_auth` builds one and stores it on ``app.state.heygen_auth``;
    routes reach it with ``Depends(get_auth)``.

    Args:
        user_loader: ``async (subject) -> user | None``.
        settings: Keys and rules; ``Settings()`` (the environment) when omitted.
        revocation_store: Where revoked ids and cutoffs live; defaults to the
            app's cache (unless it is a ``MemoryCache``, which could evict
            them), else an in-process store.
        revocation_fail_closed: When the shared store fails or times out,
            answer 503, so a revoked token is never accepted. The default,
            False, keeps the API serving during a Redis outage: tokens are
            checked against the revocations made through this instance
            (always kept locally too) and the outage is logged.
        revocation_timeout: Seconds to wait for a shared store.
        claims_cache_size: Verified tokens remembered in-process (0 disables).
        clock: Current time in seconds since the epoch (for tests).

    Raises:
        ValueError: The settings are unsafe or inconsistent (HMAC mixed with
            asymmetric algorithms, a public key as HMAC secret, a short secret,
            a weak RSA key, a TTL over the maximum lifetime, ...).
    """

    def __init__(
        self,
        *,
        user_loader: UserLoader,
        settings: Settings | None = None,
        revocation_store: CacheBackend | None = None,
        revocation_fail_closed: bool = False,
        revocation_timeout: float = 0.5,
        claims_cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(user_loader):
            raise TypeError("user_loader must be an async callable: async (subject) -> user")
        if revocation_timeout <= 0:
            raise ValueError("revocation_timeout must be > 0 seconds")
        self.settings = settings if settings is not None else Settings()
        self.codec = codec_from_settings(self.settings, clock)
        self.user_loader = user_loader
        self.revocation_fail_closed = revocation_fail_closed
        self.revocation_timeout = revocation_timeout
        self._explicit_store = revocation_store
        # Never evicts: a bound would let a flood of logouts push out older revocations.
        self._local_store = MemoryCache(maxsize=None)
        self._claims_cache = ClaimsCache(claims_cache_size)
        self._clock = clock
        self._prefix = f"{self.settings.app_name}:auth:"
        self._app: FastAPI | None = None
        self._store_down_since: float | None = None
        self._checked_locally = 0
        self._refused = 0
        self._warned_local_store = False

    # --- issuing -------------------------------------------------------------

    def create_access_token(
        self,
        subject: object,
        *,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        expires_in: timedelta | float | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        session: TokenClaims | None = None,
    ) -> str:
        """A signed access token for ``subject`` (``str()`` of an id, a UUID, ...).

        Carries ``sub``, ``type``, ``iat``, ``nbf``, ``exp``, a fresh ``jti``,
        ``iss``/``aud`` when configured, ``roles`` and a space-separated
        ``scope`` when given. ``roles`` are informational: the user loader
        decides what the user may do.

        Args:
            expires_in: The token's lifetime, a ``timedelta`` or seconds;
                ``jwt_access_token_ttl`` by default.
            session: When refreshing, the claims :meth:`rotate_refresh_token`
                returned: the new token stays in that login's session (``sid``),
                so :meth:`revoke_tokens_issued_before` refuses it with the
                rest of the session even if it was minted after the cutoff.

        Raises:
            ValueError: An empty subject, ``expires_in`` under one second or over
                ``jwt_max_token_lifetime``, a scope with spaces or quotes,
                ``extra_claims`` setting a registered claim, or a ``session``
                of another subject.
            TypeError: ``roles`` or ``scopes`` given as one string.
        """
        return mint(
            self.codec,
            self.settings,
            "access",
            subject,
            roles,
            scopes,
            expires_in,
            extra_claims,
            session,
        )

    def create_refresh_token(
        self,
        subject: object,
        *,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        expires_in: timedelta | float | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        session: TokenClaims | None = None,
    ) -> str:
        """A refresh token: refused wherever an access token is expected, and vice versa.

        Pass ``session=`` the claims :meth:`rotate_refresh_token` returned, as
        for :meth:`create_access_token`; ``expires_in`` defaults to
        ``jwt_refresh_token_ttl``.
        """
        return mint(
            self.codec,
            self.settings,
            "refresh",
            subject,
            roles,
            scopes,
            expires_in,
            extra_claims,
            session,
        )

    # --- verifying -----------------------------------------------------------

    def _verified_claims(self, token: str) -> TokenClaims:
        if len(token) > self.codec.max_token_bytes:
            raise self._rejected("too_large")
        digest = token_digest(token)
        cached = self._claims_cache.get(digest, self._clock())
        if cached is not None:
            return cached
        try:
            claims = claims_from_payload(self.codec.decode(token))
        except ExpiredTokenError:
            logger.info("Token rejected", extra={"auth_failure": "expired"})
            raise AuthenticationError(
                "Token has expired", code="token_expired", www_authenticate=_CHALLENGE_EXPIRED
            ) from None
        except TokenError as exc:
            raise self._rejected(exc.reason) from None
        self._claims_cache.put(digest, claims, claims.expires_at + self.codec.leeway)
        return claims

    @staticmethod
    def _rejected(reason: str) -> AuthenticationError:
        logger.info("Token rejected", extra={"auth_failure": reason})
        return AuthenticationError(
            "Invalid token", code="invalid_token", www_authenticate=_CHALLENGE_INVALID
        )

    async def verify_token(
        self,
        token: str,
        *,
        token_type: TokenType = "access",  # noqa: S107 - a token kind, not a password
    ) -> TokenClaims:
        """Verify ``token`` completely: signature and claims, type, revocation, cutoff.

        To exchange a refresh token for new tokens, use
        :meth:`rotate_refresh_token` instead: it also spends the token and
        detects its reuse.

        Raises:
            AuthenticationError: The token is not exactly valid.
            ServiceUnavailableError: The revocation store failed (unless
                ``revocation_fail_closed`` is False).
        """
        claims = self._verified_claims(token)
        if claims.token_type != token_type:
            raise self._rejected("wrong_type")
        await self._check_revocation(claims)
        return claims

    async def rotate_refresh_token(self, token: str) -> TokenClaims:
        """Spend a refresh token, once, for a new pair; a reuse revokes the user's tokens.

        Refresh-token rotation with reuse detection (OAuth 2.0 Security BCP,
        RFC 9700 section 4.14): the token is verified like
        :meth:`verify_token` (``token_type="refresh"``), then its ``jti`` is
        marked spent atomically in the revocation store, so of several
        concurrent uses exactly one succeeds, on every instance sharing the
        store. The caller then issues the new tokens with ``session=`` the
        returned claims, which keeps them in the login's session: a cutoff
        made while this refresh was in flight refuses them too.

        Presenting a spent token again, later or concurrently, is taken as a
        sign that it leaked: every token of its subject issued up to now (and
        within :data:`REFRESH_REUSE_WINDOW` seconds of the spend, so that the
        pair a concurrent winner is still minting is refused too) is revoked
        with :meth:`revoke_tokens_issued_before`, and the call raises
        ``AuthenticationError`` with code ``refresh_token_reused``. A spent
        token that an earlier cutoff already refuses answers the same code
        without revoking again, so replaying an old token cannot log the user
        out over and over. A refresh token revoked otherwise (logout with
        :meth:`revoke_token`) or refused by a cutoff answers a plain
        ``invalid_token``.

        The token is spent even when the route then refuses the user (for
        example an inactive one). The shared store is required whatever
        ``revocation_fail_closed`` says: a rotation that could not record the
        spent ``jti`` would let the token be spent again, so while the store
        fails or times out this answers 503 and nothing is spent.

        Returns:
            The claims of the refresh token just spent (``subject`` is the user).

        Raises:
            AuthenticationError: Code ``refresh_token_reused`` for a reuse,
                ``token_expired`` or ``invalid_token`` otherwise (not a
                refresh token, revoked, cut off, ...).
            ServiceUnavailableError: The revocation store failed; nothing
                was spent (or, on a reuse, the tokens could not be revoked).
        """
        claims = self._verified_claims(token)
        if claims.token_type != "refresh":  # noqa: S105 - a token kind, not a password
            raise self._rejected("wrong_type")
        store = self._store()
        key = self._jti_key(claims.jti)
        try:
            entry, cutoff = await self._bounded(
                store, store.get_many([key, self._cutoff_key(claims.subject)])
            )
            cutoff_at = None if cutoff is None else _cutoff_ms(cutoff)
            if entry is None and (cutoff_at is None or session_started_ms(claims) >= cutoff_at):
                now = self._clock()
                # Unique to this call, so that it can recognise its own write.
                marker = _SPENT_PREFIX + f"{now}:{secrets.token_hex(8)}".encode()
                ttl = max(claims.expires_at + self.codec.leeway - now, 1.0)
                try:
                    spent = await self._bounded(store, store.set_if_absent(key, marker, ttl=ttl))
                except Exception:
                    # The write may have been applied with only its reply lost or
                    # late: answering 503 ("nothing spent") would make the client's
                    # retry look like a replay. If the entry is ours, this call spent it.
                    if await self._bounded(store, store.get(key)) != marker:
                        raise
                    spent = True
                if spent:
                    if store is not self._local_store:
                        await self._local_store.set(key, marker, ttl=ttl)
                    if self._store_down_since is not None:
                        self._store_recovered()
                    return claims
                # Spent (or revoked) by a concurrent request since the read.
                entry = await self._bounded(store, store.get(key))
        except Exception as exc:
            self._store_failed(exc, refused=True)
            raise ServiceUnavailableError(
                "Token refresh is temporarily unavailable", retry_after=1
            ) from None
        if self._store_down_since is not None:
            self._store_recovered()
        spent_at = None if entry is None else _spent_at(entry)
        cut_off = cutoff_at is not None and session_started_ms(claims) < cutoff_at
        if spent_at is None:
            raise self._rejected("issued_before_cutoff" if cut_off else "revoked")
        if not cut_off:
            now = self._clock()
            # A second to spare past the window, for clocks of other instances.
            until = int(max(now, spent_at + REFRESH_REUSE_WINDOW)) + 1
            await self.revoke_tokens_issued_before(claims.subject, until)
        logger.warning(
            "Refresh token reused; tokens of its subject revoked",
            extra={"auth_failure": "refresh_token_reused", "user_id": claims.subject},
        )
        raise AuthenticationError(
            "Refresh token already used; every session of this user was revoked",
            code="refresh_token_reused",
            www_authenticate=_CHALLENGE_INVALID,
        )

    async def _bounded(self, store: CacheBackend, operation: Awaitable[_T]) -> _T:
        """``operation`` on ``store``, cut off after ``revocation_timeout`` for a shared store."""
        if store is self._local_store:
            return await operation
        async with asyncio.timeout(self.revocation_timeout):
            return await operation

    def _store(self) -> CacheBackend:
        if self._explicit_store is not None:
            return self._explicit_store
        if self._app is not None:
            # Read the state's dict: a missing attribute would cost an exception per request.
            shared = _state_dict(self._app).get(_CACHE_STATE_KEY)
            # An app's MemoryCache is no more shared than our own store, and its
            # LRU bound would let cache traffic evict a revocation: keep ours.
            if shared is not None and not isinstance(shared, MemoryCache):
                return shared  # type: ignore[no-any-return]
        if not self._warned_local_store and self.settings.is_production:
            self._warned_local_store = True
            logger.warning(
                "Token revocation uses an in-process store: other instances will not see "
                "revocations; call install_cache() or pass revocation_store= to install_auth()"
            )
        return self._local_store

    def _jti_key(self, jti: str) -> str:
        return f"{self._prefix}revoked:{jti}"

    def _cutoff_key(self, subject: str) -> str:
        return f"{self._prefix}cutoff:{subject}"

    async def _check_revocation(self, claims: TokenClaims) -> None:
        store = self._store()
        keys = [self._jti_key(claims.jti), self._cutoff_key(claims.subject)]
        try:
            if store is self._local_store:
                revoked, cutoff = await store.get_many(keys)
            else:
                async with asyncio.timeout(self.revocation_timeout):
                    revoked, cutoff = await store.get_many(keys)
            cutoff_at = None if cutoff is None else _cutoff_ms(cutoff)
        except Exception as exc:
            self._store_failed(exc, refused=self.revocation_fail_closed)
            if self.revocation_fail_closed:
                raise ServiceUnavailableError(
                    "Authentication is temporarily unavailable", retry_after=1
                ) from None
            # Revocations made through this instance are also kept locally,
            # so those at least still hold during the outage.
            revoked, cutoff = await self._local_store.get_many(keys)
            try:
                cutoff_at = None if cutoff is None else _cutoff_ms(cutoff)
            except ValueError:  # pragma: no cover - only this library writes the local store
                cutoff_at = None
        else:
            if self._store_down_since is not None:
                self._store_recovered()
        if revoked is not None:
            raise self._rejected("revoked")
        if cutoff_at is not None and session_started_ms(claims) < cutoff_at:
            raise self._rejected("issued_before_cutoff")

    def _store_failed(self, exc: Exception, *, refused: bool) -> None:
        if refused:
            self._refused += 1
        else:
            self._checked_locally += 1
        if self._store_down_since is not None:
            return
        # One error line per incident; the recovery line reports how many
        # requests were affected meanwhile.
        self._store_down_since = time.monotonic()
        logger.error(
            "Revocation store unavailable; %s",
            "answering 503" if self.revocation_fail_closed else "checking local revocations only",
            extra={
                "error_type": type(exc).__name__,
                "fail_closed": self.revocation_fail_closed,
            },
        )

    def _store_recovered(self) -> None:
        assert self._store_down_since is not None
        logger.warning(
            "Revocation store recovered",
            extra={
                "down_seconds": round(time.monotonic() - self._store_down_since, 3),
                "requests_checked_locally": self._checked_locally,
                "requests_refused": self._refused,
            },
        )
        self._store_down_since = None
        self._checked_locally = self._refused = 0

    async def load_user(self, claims: TokenClaims) -> Any:
        """The user for ``claims`` from the user loader; 401 when unknown or inactive."""
        pending = self.user_loader(claims.subject)
        if not inspect.isawaitable(pending):
            raise TypeError(
                "user_loader must be async (return an awaitable), got "
                f"{type(pending).__name__}; wrap a sync loader with run_in_threadpool"
            )
        user = await pending
        if user is None:
            raise self._rejected("unknown_user")
        is_active = _attribute(user, "is_active")
        if is_active is not None and not is_active:
            logger.info("Token rejected", extra={"auth_failure": "inactive_user"})
            raise AuthenticationError(
                "User is inactive", code="inactive_user", www_authenticate=_CHALLENGE_INVALID
            )
        return user

    # --- revoking ------------------------------------------------------------

    async def revoke_token(self, jti: str, *, until: datetime | float) -> bool:
        """Refuse the token with id ``jti`` from now on, on every instance sharing the store.

        Args:
            jti: The token's id (``TokenClaims.jti``).
            until: When the token expires anyway (``TokenClaims.expires_at``);
                the entry is kept that long, plus the leeway.

        Returns:
            True when this call revoked it, False when it already was revoked
            or spent (refresh endpoints use :meth:`rotate_refresh_token`,
            which tells a replay from a logout).

        Raises:
            ServiceUnavailableError: The store failed: the revocation did not happen.
        """
        if not jti:
            raise ValueError("jti must not be empty")
        ttl = max(_timestamp(until) + self.codec.leeway - self._clock(), 1.0)
        key = self._jti_key(jti)
        store = self._store()
        try:
            revoked = await store.set_if_absent(key, b"1", ttl=ttl)
            if store is not self._local_store:
                await self._local_store.set(key, b"1", ttl=ttl)
            return revoked
        except Exception as exc:
            logger.error("Token revocation failed", extra={"error_type": type(exc).__name__})
            raise ServiceUnavailableError(
                "Could not revoke the token; try again", retry_after=1
            ) from exc

    async def revoke_tokens_issued_before(
        self, subject: object, when: datetime | float | None = None
    ) -> None:
        """Refuse every token of ``subject`` issued before ``when`` (default: now).

        For a password change or "log out everywhere". Counted to the
        millisecond (the time a token was issued is in its ``jti``): a token
        issued in the same millisecond as ``when`` stays valid, so a route can
        revoke and hand out a fresh token at once, while a token refreshed a
        moment before the cutoff is refused. A token whose ``jti`` does not
        carry the time counts as issued at the start of its ``iat`` second. A
        cutoff is never moved back: an earlier ``when`` than the one stored
        changes nothing.

        Raises:
            ServiceUnavailableError: The store failed: nothing was revoked.
        """
        now = self._clock()
        cutoff_ms = math.floor((_timestamp(when) if when is not None else now) * 1000)
        cutoff = cutoff_ms / 1000
        stored = f"{cutoff_ms // 1000}.{cutoff_ms % 1000:03d}".encode()
        # Kept until the last token it refuses has expired.
        ttl = max(cutoff - now, 0.0) + self.codec.max_lifetime + self.codec.leeway
        key = self._cutoff_key(str(subject))
        store = self._store()
        try:
            # Read, then write: two instances racing could still both write,
            # but no single call can reinstate tokens a later cutoff refused.
            existing = await store.get(key)
            if existing is not None and _stored_cutoff(existing) >= cutoff:
                return
            await store.set(key, stored, ttl=ttl)
            if store is not self._local_store:
                await self._local_store.set(key, stored, ttl=ttl)
        except Exception as exc:
            logger.error("Token cutoff failed", extra={"error_type": type(exc).__name__})
            raise ServiceUnavailableError(
                "Could not revoke the tokens; try again", retry_after=1
            ) from exc


# --- app wiring ---------------------------------------------------------------


def get_auth(request: HTTPConnection) -> JWTAuth:
    """Dependency: the app's :class:`JWTAuth`, to issue or revoke tokens in a route."""
    auth = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(auth, JWTAuth):
        raise RuntimeError(
            "JWT auth is not configured on this app: call "
            "install_auth(app, user_loader=...) (or setup_app) at startup"
        )
    return auth


async def _auth_error_fallback(request: Request, exc: Exception) -> Response:
    # Only used until install_exception_handlers() replaces it, so that an
    # app wiring auth alone still answers 401/403 rather than 500.
    assert isinstance(exc, AppError)
    return app_error_response(request.scope, exc)


def _use_password_flow(app: FastAPI, token_url: str, scopes: Mapping[str, str]) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = schema.get("components", {}).get("securitySchemes", {})
        if SCHEME_NAME in schemes:
            schemes[SCHEME_NAME] = {
                "type": "oauth2",
                "flows": {"password": {"tokenUrl": token_url, "scopes": dict(scopes)}},
            }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_auth(
    app: FastAPI,
    *,
    user_loader: UserLoader,
    settings: Settings | None = None,
    revocation_store: CacheBackend | None = None,
    revocation_fail_closed: bool = False,
    revocation_timeout: float = 0.5,
    claims_cache_size: int = 10_000,
    token_url: str | None = None,
    scopes: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> JWTAuth:
    """Configure JWT auth on ``app`` for :func:`get_current_user` and friends.

    Builds the codec now, so unsafe settings fail at startup. See
    :class:`JWTAuth` for the arguments it shares.

    Args:
        app: The application.
        user_loader: ``async (subject) -> user | None``; the user may expose
            ``roles`` or ``role``, ``is_active`` and ``id``.
        settings: Keys and rules; ``Settings()`` when omitted.
        revocation_store: Shared store for revocations.
        revocation_fail_closed: Answer 503 while the shared store fails;
            the default, False, keeps serving and checks the revocations
            made through this instance meanwhile.
        revocation_timeout: Seconds to wait for a shared store.
        claims_cache_size: Verified tokens remembered in-process.
        token_url: Publish an OAuth2 password flow posting to this URL, so the
            docs' Authorize button can log in; the route must answer
            ``{"access_token": ..., "token_type": "bearer"}``.
        scopes: Scope descriptions for that flow.
        clock: Current time (for tests).

    Raises:
        RuntimeError: Auth is already installed on ``app``.
        ValueError: Unsafe or inconsistent settings.
    """
    if getattr(app.state, STATE_KEY, None) is not None:
        raise RuntimeError("install_auth() was already called on this app")
    auth = JWTAuth(
        user_loader=user_loader,
        settings=settings,
        revocation_store=revocation_store,
        revocation_fail_closed=revocation_fail_closed,
        revocation_timeout=revocation_timeout,
        claims_cache_size=claims_cache_size,
        clock=clock,
    )
    auth._app = app
    setattr(app.state, STATE_KEY, auth)
    if getattr(app.state, _ERROR_FORMAT_STATE_KEY, None) is None:
        app.add_exception_handler(AppError, _auth_error_fallback)
    if token_url is not None:
        _use_password_flow(app, token_url, scopes or {})
    logger.debug(
        "Auth installed",
        extra={"algorithms": sorted(auth.codec.algorithms), "can_sign": auth.codec.can_sign},
    )
    return auth


# --- dependencies ------------------------------------------------------------


class _BearerToken(SecurityBase):
    """The ``Authorization: Bearer`` credentials; publishes the scheme in OpenAPI.

    Returns None without an Authorization header or with another scheme, and
    the (possibly empty) credentials for ``Bearer``. Several Authorization
    headers, one of them Bearer, give a marker that is refused: a proxy
    reading another of them than this server would see another identity.
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(bearerFormat="JWT")
        self.scheme_name = SCHEME_NAME

    async def __call__(self, request: HTTPConnection) -> str | None:
        # ASGI header names are lower-case bytes; scanning them directly
        # avoids building a Headers object on every request.
        found: list[bytes] = []
        for name, raw in request.scope["headers"]:
            if name == b"authorization":
                found.append(raw)
        if not found:
            return None
        bearers = [raw for raw in found if raw[:7].lower() == b"bearer "]
        if len(found) > 1 and bearers:
            return _SEVERAL_CREDENTIALS
        scheme, _, credentials = found[0].decode("latin-1").partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None


# What _BearerToken gives for a request with several Authorization headers,
# told apart by identity (``is``): credentials read from a header are never it.
_SEVERAL_CREDENTIALS = "\x00several"


bearer_token = _BearerToken()


async def _authenticate(request: HTTPConnection, token: str | None) -> tuple[Any, TokenClaims]:
    state = request.scope.setdefault("state", {})
    done: tuple[Any, TokenClaims] | None = state.get(_REQUEST_USER_KEY)
    if done is not None:
        return done
    auth = get_auth(request)
    if token is None:
        raise AuthenticationError("Not authenticated")
    if not token:
        raise auth._rejected("empty")
    if token is _SEVERAL_CREDENTIALS:
        raise auth._rejected("several_authorization_headers")
    claims = await auth.verify_token(token)
    user = await auth.load_user(claims)
    state[_REQUEST_USER_KEY] = (user, claims)
    bind_request_context(user_id=claims.subject)
    return user, claims


def _check_scopes(claims: TokenClaims, required: list[str]) -> None:
    missing = [scope for scope in required if scope not in claims.scopes]
    if not missing:
        return
    challenge = 'Bearer error="insufficient_scope"'
    listed = [scope for scope in required if SCOPE_TOKEN.fullmatch(scope)]
    if listed:
        challenge += f', scope="{" ".join(listed)}"'
    raise PermissionDeniedError(
        f"Missing required scope: {' '.join(missing)}",
        code="insufficient_scope",
        headers={"WWW-Authenticate": challenge},
    )


async def get_current_user(
    request: HTTPConnection,
    security_scopes: SecurityScopes,
    token: Annotated[str | None, Depends(bearer_token)],
) -> Any:
    """Dependency: the authenticated user, or 401.

    Also usable as ``Security(get_current_user, scopes=[...])`` (FastAPI's
    OAuth2 scopes): a token without every scope answers 403
    ``insufficient_scope``.
    """
    user, claims = await _authenticate(request, token)
    if security_scopes.scopes:
        _check_scopes(claims, security_scopes.scopes)
    return user


async def get_optional_user(
    request: HTTPConnection,
    token: Annotated[str | None, Depends(bearer_token)],
) -> Any | None:
    """Dependency: the user when a bearer token is sent, None without one.

    A token that is sent but invalid still answers 401.
    """
    if token is None:
        get_auth(request)
        return None
    user, _ = await _authenticate(request, token)
    return user


async def get_token_claims(
    request: HTTPConnection, user: Annotated[Any, Depends(get_current_user)]
) -> TokenClaims:
    """Dependency: the verified claims of the current request's token (e.g. to revoke it)."""
    done: tuple[Any, TokenClaims] | None = request.scope.get("state", {}).get(_REQUEST_USER_KEY)
    if done is None:
        # Only when a test overrides get_current_user without overriding this.
        raise RuntimeError(
            "get_current_user is overridden (app.dependency_overrides); "
            "override get_token_claims too"
        )
    return done[1]


def require_roles(*roles: str | Enum) -> Callable[..., Awaitable[Any]]:
    """Dependency factory: the user when they have any of ``roles``, else 403.

    Roles are read from the loaded user (``roles`` or ``role``), never from
    the token. Not logged in is 401.
    """
    if not roles:
        raise ValueError("require_roles() needs at least one role")
    wanted = frozenset(_role_name(role) for role in roles)
    listed = ", ".join(sorted(wanted))

    async def dependency(user: Annotated[Any, Depends(get_current_user)]) -> Any:
        if wanted.isdisjoint(_user_roles(user)):
            raise PermissionDeniedError(f"Requires role: {listed}")
        return user

    dependency.__name__ = dependency.__qualname__ = f"require_roles({listed})"
    return dependency


#: Dependency: the user when they have the ``admin`` role; 401 or 403 otherwise.
require_admin_role = require_roles(ADMIN_ROLE)
require_admin_role.__doc__ = """The user when they have the ``admin`` role (:data:`ADMIN_ROLE`).

A missing or invalid token answers 401 with ``WWW-Authenticate: Bearer``; a
valid user without the role answers 403 ``permission_denied``. Use it as
``Depends(require_admin_role)`` or in a route's ``dependencies=``.
"""


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Any]]:
    """Dependency factory: the user when the token grants every one of ``scopes``.

    Equivalent to ``Security(get_current_user, scopes=[...])``; the scopes
    appear in the OpenAPI security requirement. Missing scope: 403
    ``insufficient_scope``.
    """
    if not scopes:
        raise ValueError("require_scopes() needs at least one scope")
    for scope in scopes:
        if SCOPE_TOKEN.fullmatch(scope) is None:
            raise ValueError(f"invalid scope {scope!r}: no spaces, quotes or backslashes")

    async def dependency(
        user: Annotated[Any, Security(get_current_user, scopes=list(scopes))],
    ) -> Any:
        return user

    dependency.__name__ = dependency.__qualname__ = f"require_scopes({' '.join(scopes)})"
    return dependency


def ensure_owner_or_admin(user: Any, owner_id: object, *, admin_role: str = ADMIN_ROLE) -> None:
    """Raise 403 unless ``user`` owns the resource (``user.id == owner_id``) or is an admin.

    For rules such as "only the owner or an admin can delete a video"; ids
    compare equal as values or as strings (a UUID and its text). ``user`` None
    (``get_optional_user`` without a token) raises 401.
    """
    if user is None:  # get_optional_user without a token: not logged in is 401, not 403
        raise AuthenticationError("Not authenticated")
    user_id = _attribute(user, "id")
    if user_id is not None and (user_id == owner_id or str(user_id) == str(owner_id)):
        return
    if admin_role in _user_roles(user):
        return
    raise PermissionDeniedError("Only the owner or an admin can do this")


def routes_needing_auth(app: FastAPI) -> list[str]:
    """The routes of ``app`` with an auth dependency (``"GET /me"``), at any depth."""

    def uses_auth(dependant: Any) -> bool:
        for dependency in dependant.dependencies:
            if dependency.call is bearer_token or dependency.call is get_auth:
                return True
            if uses_auth(dependency):
                return True
        return False

    found = []
    for route in app.routes:
        dependant = getattr(route, "dependant", None)
        if dependant is not None and uses_auth(dependant):
            methods = sorted(getattr(route, "methods", None) or ["WEBSOCKET"])
            found.append(f"{','.join(methods)} {getattr(route, 'path', '?')}")
    return found


def check_auth_installed(app: FastAPI) -> None:
    """Refuse to start an app whose routes need auth that was never installed.

    Without it each such route would answer 500 at its first request.

    Raises:
        RuntimeError: Naming the routes and how to install auth.
    """
    if isinstance(getattr(app.state, STATE_KEY, None), JWTAuth):
        return
    routes = routes_needing_auth(app)
    if routes:
        shown = ", ".join(routes[:5]) + (f" and {len(routes) - 5} more" if len(routes) > 5 else "")
        raise RuntimeError(
            f"These routes need JWT auth, which is not installed: {shown}. Pass "
            "user_loader= to setup_app(), or call install_auth(app, user_loader=...)"
        )
