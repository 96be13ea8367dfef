"""Auth hardening: secrets that must never verify tokens, refresh rotation under a slow
store, and revocation times that cannot be misread."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from heygen_conventions import MemoryCache, ServiceUnavailableError
from heygen_conventions._jwt import JWTCodec
from heygen_conventions.settings import DEVELOPMENT_JWT_SECRET
from tests.fixtures.auth import KeyPair, bearer, build_app, make_settings

# --- the public development secret in production ---------------------------------


def test_production_refuses_the_development_secret_as_a_verification_secret() -> None:
    # Verification secrets verify tokens too: the public one would let anyone sign for kid v1.
    with pytest.raises(ValueError, match="public development secret"):
        make_settings(
            environment="production",
            jwt_signing_kid="v2",
            jwt_verification_secrets={"v1": DEVELOPMENT_JWT_SECRET},
        )


@pytest.mark.parametrize("spelling", ["{}\n", "{}\r\n", " {}", '"{}"'])
def test_production_refuses_the_development_secret_however_it_is_padded(spelling: str) -> None:
    # A secret file or a Kubernetes secret often ends with a newline; the key is
    # then the public secret plus "\n", which anyone can try.
    with pytest.raises(ValueError, match="public development secret"):
        make_settings(environment="production", jwt_secret=spelling.format(DEVELOPMENT_JWT_SECRET))


# --- an X.509 certificate (DER, x5c) as an HMAC secret -----------------------------


def _der_certificate(keys: KeyPair) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth-tests")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.private.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .sign(keys.private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("form", ["x5c", "der-base64url"])
def test_certificate_as_hmac_secret(rsa_keys: KeyPair, form: str) -> None:
    der = _der_certificate(rsa_keys)
    secret = {
        "x5c": base64.b64encode(der).decode(),  # as a JWKS publishes it
        "der-base64url": base64.urlsafe_b64encode(der).rstrip(b"=").decode(),
    }[form]
    with pytest.raises(ValueError, match="key material"):
        build_app(settings=make_settings(jwt_secret=secret))


def test_raw_der_certificate_as_hmac_secret(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="key material"):
        JWTCodec(algorithms=["HS256"], secret=_der_certificate(rsa_keys))


def test_raw_der_key_ending_in_a_whitespace_byte_is_still_key_material() -> None:
    # A key's (or a certificate signature's) last byte is random: about one in forty
    # is one strip() removes, which hid the DER from the parser.
    while True:
        der = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        if der[-1:] in (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c"):
            break
    with pytest.raises(ValueError, match="key material"):
        JWTCodec(algorithms=["HS256"], secret=der)


def test_spki_base64url_as_hmac_secret(rsa_keys: KeyPair) -> None:
    secret = base64.urlsafe_b64encode(rsa_keys.public_der).rstrip(b"=").decode()
    with pytest.raises(ValueError, match="key material"):
        build_app(settings=make_settings(jwt_secret=secret))


# --- a rotation whose write reply is late ------------------------------------------


class LateReplyStore(MemoryCache):
    """``set_if_absent`` is applied, then its reply is late (a slow network, a GC pause)."""

    late = True

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        stored = await super().set_if_absent(key, value, ttl=ttl)
        if self.late:
            await asyncio.sleep(1)
        return stored


async def test_a_late_write_reply_does_not_turn_the_retry_into_a_reuse() -> None:
    store = LateReplyStore()
    _, auth, _ = build_app(revocation_store=store, revocation_timeout=0.05)
    refresh = auth.create_refresh_token("alice")
    try:
        claims = await auth.rotate_refresh_token(refresh)
    except ServiceUnavailableError:
        # The client was told "503, nothing was spent, retry": it retries.
        store.late = False
        claims = await auth.rotate_refresh_token(refresh)
    assert claims.subject == "alice"
    # And the user was not logged out everywhere for it.
    assert (await auth.verify_token(auth.create_access_token("alice"))).subject == "alice"


# --- a naive datetime would move a cutoff by the host's UTC offset ----------------


@pytest.fixture
def host_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("host_in_tokyo")
async def test_a_naive_cutoff_never_lets_older_tokens_through() -> None:
    app, auth, _ = build_app()
    token = auth.create_access_token("alice")
    # "Log out everywhere" at the time a DateTime column without time zone
    # returns (naive UTC), two seconds from now.
    changed_at = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=2)
    try:
        await auth.revoke_tokens_issued_before("alice", changed_at)
    except ValueError:
        return  # refused as ambiguous: fails closed
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/me", headers=bearer(token))
    assert response.status_code == 401, "a token issued before the cutoff is still accepted"
