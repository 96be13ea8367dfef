"""Interoperability with an independent implementation (PyJWT).

Tokens PyJWT mints with the right key and claims are accepted; PyJWT's attack
tokens are refused; tokens the library mints verify under PyJWT.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from fastapi.testclient import TestClient

from tests.fixtures.auth import SECRET, KeyPair, _pair, bearer, build_app, make_settings

LONG_SECRET = "interop-" + "s" * 64  # enough for HS512


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "alice",
        "type": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def client_for(**settings: Any) -> tuple[TestClient, Any]:
    app, auth, _ = build_app(settings=make_settings(**settings))
    return TestClient(app), auth


@pytest.fixture(scope="module")
def ec384() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP384R1()))


@pytest.fixture(scope="module")
def ec521() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP521R1()))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_pyjwt_hmac_tokens_are_accepted(alg: str) -> None:
    client, _ = client_for(jwt_secret=LONG_SECRET, jwt_algorithm=alg)
    token = pyjwt.encode(claims(), LONG_SECRET, algorithm=alg)
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_pyjwt_rsa_tokens_are_accepted(rsa_keys: KeyPair, alg: str) -> None:
    client, _ = client_for(jwt_algorithm=alg, jwt_private_key=rsa_keys.private_pem)
    token = pyjwt.encode(claims(), rsa_keys.private_pem, algorithm=alg)
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_pyjwt_ec_tokens_are_accepted(
    ec_keys: KeyPair, ec384: KeyPair, ec521: KeyPair, alg: str
) -> None:
    keys = {"ES256": ec_keys, "ES384": ec384, "ES512": ec521}[alg]
    client, _ = client_for(jwt_algorithm=alg, jwt_private_key=keys.private_pem)
    token = pyjwt.encode(claims(), keys.private_pem, algorithm=alg)
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("curve", ["ed25519", "ed448"])
def test_pyjwt_eddsa_tokens_are_accepted(ed_keys: KeyPair, curve: str) -> None:
    keys = ed_keys if curve == "ed25519" else _pair(ed448.Ed448PrivateKey.generate())
    client, _ = client_for(jwt_algorithm="EdDSA", jwt_private_key=keys.private_pem)
    token = pyjwt.encode(claims(), keys.private_pem, algorithm="EdDSA")
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text


def test_pyjwt_token_with_issuer_audience_and_kid_is_accepted(rsa_keys: KeyPair) -> None:
    client, _ = client_for(
        jwt_algorithm="RS256",
        jwt_private_key=rsa_keys.private_pem,
        jwt_signing_kid="2026-01",
        jwt_issuer="https://id.example",
        jwt_audience="videos-api",
    )
    token = pyjwt.encode(
        claims(iss="https://id.example", aud=["videos-api", "other"]),
        rsa_keys.private_pem,
        algorithm="RS256",
        headers={"kid": "2026-01"},
    )
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text


def test_verify_only_service_accepts_pyjwt_tokens_by_kid(
    rsa_keys: KeyPair, rsa_keys_2: KeyPair
) -> None:
    client, auth = client_for(
        jwt_algorithm="RS256",
        jwt_public_keys={"old": rsa_keys.public_pem, "new": rsa_keys_2.public_pem},
    )
    assert not auth.codec.can_sign
    for kid, keys in (("old", rsa_keys), ("new", rsa_keys_2)):
        token = pyjwt.encode(claims(), keys.private_pem, algorithm="RS256", headers={"kid": kid})
        response = client.get("/me", headers=bearer(token))
        assert response.status_code == 200, response.text
    swapped = pyjwt.encode(
        claims(), rsa_keys.private_pem, algorithm="RS256", headers={"kid": "new"}
    )
    assert client.get("/me", headers=bearer(swapped)).status_code == 401
    no_kid = pyjwt.encode(claims(), rsa_keys.private_pem, algorithm="RS256")
    assert client.get("/me", headers=bearer(no_kid)).status_code == 401


def test_hmac_rotation_accepts_the_old_secret_by_kid() -> None:
    old = "previous-" + "o" * 40
    client, auth = client_for(
        jwt_signing_kid="k2", jwt_verification_secrets={"k1": old}, jwt_secret=SECRET
    )
    by_old = pyjwt.encode(claims(), old, algorithm="HS256", headers={"kid": "k1"})
    assert client.get("/me", headers=bearer(by_old)).status_code == 200
    by_new = pyjwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "k2"})
    assert client.get("/me", headers=bearer(by_new)).status_code == 200
    old_under_new_kid = pyjwt.encode(claims(), old, algorithm="HS256", headers={"kid": "k2"})
    assert client.get("/me", headers=bearer(old_under_new_kid)).status_code == 401
    assert pyjwt.get_unverified_header(auth.create_access_token("alice"))["kid"] == "k2"


# --- PyJWT's attack tokens --------------------------------------------------------


def test_pyjwt_alg_none_is_refused() -> None:
    client, _ = client_for()
    token = pyjwt.encode(claims(), None, algorithm="none")
    assert client.get("/me", headers=bearer(token)).status_code == 401


def test_pyjwt_token_under_another_secret_is_refused() -> None:
    client, _ = client_for()
    token = pyjwt.encode(claims(), SECRET + "-other", algorithm="HS256")
    assert client.get("/me", headers=bearer(token)).status_code == 401


def test_pyjwt_hs512_is_refused_when_hs256_is_configured() -> None:
    client, _ = client_for(jwt_secret=LONG_SECRET)
    token = pyjwt.encode(claims(), LONG_SECRET, algorithm="HS512")
    assert client.get("/me", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": None},
        {"iat": None},
        {"type": None},
        {"exp": int(time.time()) - 1, "iat": int(time.time()) - 60, "nbf": None},
        {"nbf": int(time.time()) + 3600},
        {"aud": "someone-else"},
        {"type": "refresh"},
    ],
    ids=["no-exp", "no-iat", "no-type", "expired", "not-yet", "aud", "refresh"],
)
def test_pyjwt_tokens_with_bad_claims_are_refused(overrides: dict[str, Any]) -> None:
    client, _ = client_for()
    token = pyjwt.encode(claims(**overrides), SECRET, algorithm="HS256")
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    "headers",
    [{"crit": ["b64"], "b64": False}, {"jku": "https://attacker.example/k"}, {"kid": "../x"}],
    ids=["crit", "jku", "kid"],
)
def test_pyjwt_tokens_with_bad_headers_are_refused(headers: dict[str, Any]) -> None:
    client, _ = client_for()
    token = pyjwt.encode(claims(), SECRET, algorithm="HS256", headers=headers)
    assert client.get("/me", headers=bearer(token)).status_code == 401


def test_pyjwt_es256_token_from_another_key_is_refused(ec_keys: KeyPair) -> None:
    client, _ = client_for(jwt_algorithm="ES256", jwt_private_key=ec_keys.private_pem)
    stranger = _pair(ec.generate_private_key(ec.SECP256R1()))
    token = pyjwt.encode(claims(), stranger.private_pem, algorithm="ES256")
    assert client.get("/me", headers=bearer(token)).status_code == 401


# --- the other way round ---------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256", "EdDSA"])
def test_library_tokens_verify_under_pyjwt(
    rsa_keys: KeyPair, ec_keys: KeyPair, ed_keys: KeyPair, alg: str
) -> None:
    keys = {"RS256": rsa_keys, "ES256": ec_keys, "EdDSA": ed_keys}.get(alg)
    settings: dict[str, Any] = {
        "jwt_algorithm": alg,
        "jwt_issuer": "https://id.example",
        "jwt_audience": "videos-api",
    }
    if keys is not None:
        settings["jwt_private_key"] = keys.private_pem
    _, auth = client_for(**settings)
    token = auth.create_access_token("alice", roles=["member"], scopes=["videos:read"])
    verification_key = SECRET if keys is None else keys.public_pem
    decoded = pyjwt.decode(
        token,
        verification_key,
        algorithms=[alg],
        audience="videos-api",
        issuer="https://id.example",
        options={"require": ["exp", "iat", "nbf", "sub", "jti"]},
    )
    assert decoded["sub"] == "alice"
    assert decoded["type"] == "access"
    assert decoded["roles"] == ["member"]
    assert decoded["scope"] == "videos:read"
    assert pyjwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT"}


def test_pyjwt_eddsa_token_from_another_key_is_refused(ed_keys: KeyPair) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    client, _ = client_for(jwt_algorithm="EdDSA", jwt_private_key=ed_keys.private_pem)
    stranger = _pair(ed25519.Ed25519PrivateKey.generate())
    token = pyjwt.encode(claims(), stranger.private_pem, algorithm="EdDSA")
    assert client.get("/me", headers=bearer(token)).status_code == 401
