"""Unsafe or inconsistent key configurations fail at setup, with a clear message."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient

from heygen_conventions import JWTAuth, Settings, install_auth
from heygen_conventions._jwt import JWTCodec
from tests.fixtures.auth import SECRET, KeyPair, _pair, bearer, build_app, make_settings


async def _no_user(subject: str) -> None:
    return None


def install(**settings: Any) -> JWTAuth:
    return install_auth(FastAPI(), user_loader=_no_user, settings=make_settings(**settings))


def test_mixing_hmac_and_asymmetric_algorithms(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="mixes HMAC and asymmetric"):
        install(
            jwt_algorithm="RS256",
            jwt_algorithms=["RS256", "HS256"],
            jwt_private_key=rsa_keys.private_pem,
        )


@pytest.mark.parametrize("form", ["pem", "der-base64", "openssh", "jwk", "certificate"])
def test_public_key_as_hmac_secret(rsa_keys: KeyPair, form: str) -> None:
    secret = {
        "pem": rsa_keys.public_pem,
        "der-base64": base64.b64encode(rsa_keys.public_der).decode(),
        "openssh": rsa_keys.public_ssh,
        "jwk": json.dumps({"kty": "RSA", "n": "x" * 40, "e": "AQAB"}),
        "certificate": _certificate(rsa_keys),
    }[form]
    with pytest.raises(ValueError, match="key material") as caught:
        install(jwt_secret=secret)
    assert rsa_keys.public_pem.splitlines()[1] not in str(caught.value)


def test_raw_der_public_key_as_hmac_secret(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="key material"):
        JWTCodec(algorithms=["HS256"], secret=rsa_keys.public_der)


def test_ec_public_key_as_hmac_secret(ec_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="key material"):
        install(jwt_secret=ec_keys.public_ssh)


@pytest.mark.parametrize(
    ("alg", "length"), [("HS256", 31), ("HS384", 47), ("HS512", 63)], ids=["256", "384", "512"]
)
def test_short_secret_is_refused_even_in_development(alg: str, length: int) -> None:
    secret = "s" * length
    with pytest.raises(ValueError, match=f"{length} bytes") as caught:
        install(jwt_secret=secret, jwt_algorithm=alg, environment="development")
    assert secret not in str(caught.value)
    install(jwt_secret=secret + "s", jwt_algorithm=alg)


def test_hs512_with_the_development_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="HS512 needs at least 64 bytes"):
        install_auth(
            FastAPI(),
            user_loader=_no_user,
            settings=Settings(environment="development", jwt_algorithm="HS512"),
        )


@pytest.mark.parametrize("alg", ["none", "PS256", "HS1", "RSA-OAEP"])
def test_unsupported_algorithms(alg: str) -> None:
    with pytest.raises(ValueError, match="unsupported algorithms"):
        install(jwt_algorithm="HS256", jwt_algorithms=["HS256", alg])


def test_signing_algorithm_outside_the_allow_list() -> None:
    with pytest.raises(ValueError, match="not in the allow-list"):
        install(jwt_algorithm="HS384", jwt_algorithms=["HS256"])


def test_weak_rsa_key() -> None:
    weak = _pair(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - the weak key under test
    with pytest.raises(ValueError, match="1024-bit RSA key"):
        install(jwt_algorithm="RS256", jwt_private_key=weak.private_pem)


def test_ec_curve_must_match_the_algorithm() -> None:
    p384 = _pair(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="cannot be used with any of the allowed"):
        install(jwt_algorithm="ES256", jwt_private_key=p384.private_pem)


def test_private_key_that_cannot_sign_the_signing_algorithm(
    rsa_keys: KeyPair, ec_keys: KeyPair
) -> None:
    with pytest.raises(ValueError, match="cannot sign ES256"):
        install(
            jwt_algorithm="ES256",
            jwt_algorithms=["ES256", "RS256"],
            jwt_private_key=rsa_keys.private_pem,
            jwt_public_keys={"ec": ec_keys.public_pem},
        )


def test_asymmetric_without_keys() -> None:
    with pytest.raises(ValueError, match="needs a PEM private key or public keys"):
        install(jwt_algorithm="RS256")


def test_hmac_with_asymmetric_keys(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="asymmetric keys are configured"):
        install(jwt_public_keys={"k": rsa_keys.public_pem})


def test_asymmetric_with_hmac_verification_secrets(rsa_keys: KeyPair) -> None:
    with pytest.raises(ValueError, match="HMAC verification secrets"):
        install(
            jwt_algorithm="RS256",
            jwt_private_key=rsa_keys.private_pem,
            jwt_verification_secrets={"k": SECRET},
        )


def test_verification_secret_reusing_the_signing_kid() -> None:
    with pytest.raises(ValueError, match="is the signing kid"):
        install(jwt_signing_kid="k", jwt_verification_secrets={"k": SECRET + "x"})


def test_public_key_under_the_signing_kid_must_match(
    rsa_keys: KeyPair, rsa_keys_2: KeyPair
) -> None:
    with pytest.raises(ValueError, match="not the public half"):
        install(
            jwt_algorithm="RS256",
            jwt_private_key=rsa_keys.private_pem,
            jwt_signing_kid="k",
            jwt_public_keys={"k": rsa_keys_2.public_pem},
        )
    install(
        jwt_algorithm="RS256",
        jwt_private_key=rsa_keys.private_pem,
        jwt_signing_kid="k",
        jwt_public_keys={"k": rsa_keys.public_pem},
    )


@pytest.mark.parametrize(
    "pem", ["not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_unreadable_public_key(pem: str) -> None:
    with pytest.raises(ValueError, match="not a PEM public key"):
        install(jwt_algorithm="RS256", jwt_public_keys={"k": pem})


def test_encrypted_or_unreadable_private_key(rsa_keys: KeyPair) -> None:
    encrypted = rsa_keys.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    for pem in (encrypted, "garbage"):
        with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
            install(jwt_algorithm="RS256", jwt_private_key=pem)


def test_ttl_over_the_maximum_lifetime() -> None:
    with pytest.raises(ValueError, match="jwt_refresh_token_ttl"):
        install(jwt_refresh_token_ttl=timedelta(days=60))
    with pytest.raises(ValueError, match="jwt_access_token_ttl"):
        install(jwt_access_token_ttl=timedelta(0))
    with pytest.raises(ValueError, match="jwt_access_token_ttl"):
        install(jwt_access_token_ttl=timedelta(milliseconds=500))


def test_verify_only_service_cannot_mint(rsa_keys: KeyPair) -> None:
    auth = install(jwt_algorithm="RS256", jwt_public_keys={"k": rsa_keys.public_pem})
    with pytest.raises(ValueError, match="no signing key"):
        auth.create_access_token("alice")


def test_certificate_as_verification_key(rsa_keys: KeyPair) -> None:
    settings = make_settings(
        jwt_algorithm="RS256",
        jwt_public_keys={"cert": _certificate(rsa_keys)},
    )
    app, _, _ = build_app(settings=settings)
    signer = install(jwt_algorithm="RS256", jwt_private_key=rsa_keys.private_pem)
    token = signer.create_access_token("alice")
    assert TestClient(app).get("/me", headers=bearer(token)).status_code == 200


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, rsa_keys: KeyPair) -> None:
    monkeypatch.setenv("HEYGEN_JWT_ALGORITHM", "RS256")
    monkeypatch.setenv("HEYGEN_JWT_PRIVATE_KEY", rsa_keys.private_pem)
    monkeypatch.setenv("HEYGEN_JWT_SIGNING_KID", "2026-01")
    monkeypatch.setenv("HEYGEN_JWT_MAX_TOKEN_BYTES", "4096")
    settings = Settings()
    auth = install_auth(FastAPI(), user_loader=_no_user, settings=settings)
    assert auth.codec.max_token_bytes == 4096
    token = auth.create_access_token("alice")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "2026-01"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": []},
        {"algorithms": ["HS256"], "secret": SECRET, "leeway": -1},
        {"algorithms": ["HS256"], "secret": SECRET, "max_token_bytes": 10},
        {"algorithms": ["HS256"], "secret": SECRET, "signing_kid": "k" * 300},
        {"algorithms": ["HS256"]},
    ],
    ids=["empty", "leeway", "size", "kid", "no-secret"],
)
def test_codec_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        JWTCodec(**kwargs)


def _certificate(keys: KeyPair) -> str:
    import datetime

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(keys.private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_dsa_keys_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa

    private = dsa.generate_private_key(key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="not an RSA, EC or Ed key"):
        install(jwt_algorithm="RS256", jwt_private_key=private_pem)
    with pytest.raises(ValueError, match="not an RSA, EC or Ed key"):
        install(jwt_algorithm="RS256", jwt_public_keys={"k": public_pem})


def test_codec_refuses_oversized_tokens_before_parsing() -> None:
    from heygen_conventions._jwt import TokenError

    codec = JWTCodec(
        algorithms=["HS256"], signing_algorithm="HS256", secret=SECRET, max_token_bytes=512
    )
    token = codec.encode({"pad": "x" * 600})
    with pytest.raises(TokenError, match="too_large"):
        codec.decode(token)
