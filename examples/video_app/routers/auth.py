"""Log in, refresh and log out: ``/api/v1/auth``."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form

from examples.video_app.dependencies import AuthDep, UserServiceDep
from examples.video_app.docs import errors, ok
from examples.video_app.models import MAX_EMAIL_LENGTH
from examples.video_app.schemas import (
    EXAMPLES,
    MAX_PASSWORD_LENGTH,
    LogoutRequest,
    RefreshRequest,
    TokenResponse,
)
from examples.video_app.security import issue_tokens
from heygen_conventions import AuthenticationError, ErrorDetail, TokenClaims, get_token_claims

router = APIRouter(prefix="/auth", tags=["auth"])

_TOKEN_EXAMPLE = ok(EXAMPLES["tokens"], message="Logged in")[200]
_TOKEN_EXAMPLE["content"]["application/json"]["example"].update(
    {key: EXAMPLES["tokens"][key] for key in ("access_token", "token_type", "expires_in")}
)


class LoginForm:
    """The OAuth2 password grant's form fields (RFC 6749 section 4.3), with length limits."""

    def __init__(
        self,
        username: Annotated[
            str, Form(min_length=1, max_length=MAX_EMAIL_LENGTH, description="Email address.")
        ],
        password: Annotated[
            str, Form(min_length=1, max_length=MAX_PASSWORD_LENGTH, description="Password.")
        ],
        grant_type: Annotated[
            str | None, Form(pattern="^password$", description="`password` when sent.")
        ] = None,
    ) -> None:
        self.username = username
        self.password = password


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="Log in",
    description="Exchange an email and password (OAuth2 password grant, form-encoded) for an "
    "access token and a refresh token. The tokens are in `data` and, for OAuth2 clients, "
    "`access_token` and `token_type` are repeated at the top level.",
    response_description="The new tokens",
    responses={
        200: _TOKEN_EXAMPLE,
        **errors(
            400,
            401,
            422,
            e401=ErrorDetail(code="invalid_credentials", message="Incorrect email or password"),
            e422=ErrorDetail(code="missing", message="Field required", field="body.password"),
        ),
    },
)
async def log_in(
    form: Annotated[LoginForm, Depends()], users: UserServiceDep, auth: AuthDep
) -> TokenResponse:
    """Log in with email and password; answers 401 for any wrong pair."""
    user = await users.authenticate(form.username, form.password)
    return TokenResponse.issue(issue_tokens(auth, user), "Logged in")


@router.post(
    "/refresh",
    response_model=TokenResponse,
    summary="Refresh the tokens",
    description="Exchange a refresh token for a new access token and a new refresh token. "
    "The refresh token is spent: presenting it again, at any later time or concurrently, "
    "answers 401 `refresh_token_reused` and, as a replay is a sign of theft, revokes every "
    "token of its user issued so far (the user logs in again). A refresh token revoked by "
    "logout answers 401 `invalid_token`; 503 while the token store is unavailable.",
    response_description="The new tokens",
    responses={
        200: _TOKEN_EXAMPLE,
        **errors(
            400,
            401,
            422,
            503,
            e401=ErrorDetail(
                code="refresh_token_reused",
                message="Refresh token already used; every session of this user was revoked",
            ),
            e422=ErrorDetail(code="missing", message="Field required", field="body.refresh_token"),
            e503="Token refresh is temporarily unavailable",
        ),
    },
)
async def refresh_tokens(body: RefreshRequest, auth: AuthDep) -> TokenResponse:
    """Spend a refresh token for a new pair."""
    claims = await auth.rotate_refresh_token(body.refresh_token)
    user = await auth.load_user(claims)
    return TokenResponse.issue(issue_tokens(auth, user, session=claims), "Tokens refreshed")


@router.post(
    "/logout",
    status_code=204,
    summary="Log out",
    description="Revoke the access token of this request, on every instance of the API. "
    "Send the refresh token to revoke it too, or `everywhere: true` to revoke every token "
    "issued to the user so far (all devices).",
    response_description="Logged out; no body",
    responses=errors(
        400,
        401,
        422,
        e422=ErrorDetail(
            code="bool_type", message="Input should be a valid boolean", field="body.everywhere"
        ),
    ),
)
async def log_out(
    claims: Annotated[TokenClaims, Depends(get_token_claims)],
    auth: AuthDep,
    body: LogoutRequest | None = None,
) -> None:
    """Revoke this token (and optionally the refresh token, or all of the user's)."""
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    if body is None:
        return
    if body.everywhere:
        await auth.revoke_tokens_issued_before(claims.subject)
    if body.refresh_token is not None:
        try:
            refresh = await auth.verify_token(body.refresh_token, token_type="refresh")
        except AuthenticationError:
            return  # unusable anyway
        if refresh.subject == claims.subject:
            await auth.revoke_token(refresh.jti, until=refresh.expires_at)
