"""Passwords, tokens and the user loader the library's auth dependencies call.

Passwords are hashed with Argon2id through pwdlib, in a worker thread: a hash
costs a few hundred milliseconds of CPU that must not stall the event loop.
"""

import uuid
from collections.abc import Awaitable, Callable

from anyio import to_thread
from pwdlib import PasswordHash

from examples.video_app.models import User
from examples.video_app.repositories import UserRepository
from examples.video_app.schemas import TokenPair
from heygen_conventions import Database, JWTAuth, TokenClaims

_hasher = PasswordHash.recommended()
# Verified when the email is unknown, so that a login takes as long whether
# the account exists or not.
_UNKNOWN_USER_HASH = _hasher.hash("no account has this password")


async def hash_password(password: str) -> str:
    """The Argon2id hash to store for ``password``."""
    return await to_thread.run_sync(_hasher.hash, password)


async def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """Whether ``password`` matches ``hashed``, and a new hash when the parameters changed.

    ``hashed`` None (no such user) still costs one verification.
    """
    if hashed is None:
        await to_thread.run_sync(_hasher.verify, password, _UNKNOWN_USER_HASH)
        return False, None
    return await to_thread.run_sync(_hasher.verify_and_update, password, hashed)


def issue_tokens(auth: JWTAuth, user: User, session: TokenClaims | None = None) -> TokenPair:
    """A fresh access and refresh token for ``user``; ``session``: the refresh token spent."""
    roles = [user.role.value]
    return TokenPair(
        access_token=auth.create_access_token(user.id, roles=roles, session=session),
        refresh_token=auth.create_refresh_token(user.id, session=session),
        expires_in=int(auth.settings.jwt_access_token_ttl.total_seconds()),
    )


def make_user_loader(database: Database) -> Callable[[str], Awaitable[User | None]]:
    """The loader ``setup_app`` registers: a token's subject (a user id) to the user.

    It reads the user at every request, so a disabled or demoted user loses
    access at once; it opens a short session of its own, since it runs before
    the route's session exists.
    """

    async def load_user(subject: str) -> User | None:
        try:
            user_id = uuid.UUID(subject)
        except ValueError:
            return None
        async with database.session() as session:
            return await UserRepository(session).get_by_id(user_id)

    return load_user
