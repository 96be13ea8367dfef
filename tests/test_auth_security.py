"""The security test list: every token that is not exactly valid answers 401, never 500.

Attack tokens are built by hand (standard library + cryptography), not by the
codec under test. After every test, the captured logs and the responses are
checked for the tokens sent, the secret and the private keys.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heygen_conventions import JWTAuth
from tests.fixtures.auth import (
    SECRET,
    FakeClock,
    KeyPair,
    assert_nothing_leaked,
    b64,
    b64json,
    build_app,
    claims_for,
    forge,
    make_settings,
    sign,
)


@dataclass
class Harness:
    client: TestClient
    auth: JWTAuth
    clock: FakeClock
    sent: list[str] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)

    def get(self, token: str | None, path: str = "/me", scheme: str = "Bearer") -> Any:
        headers: dict[str, bytes] = {}
        if token is not None:
            self.sent.append(token)
            value = f"{scheme} {token}".rstrip() if scheme else token
            headers["Authorization"] = value.encode("latin-1")
        response = self.client.get(path, headers=headers)
        self.responses.append(response)
        return response

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return claims_for(now=self.clock.now, **overrides)


_HARNESSES: list[Harness] = []
_KEYS: list[str] = [SECRET]


def make_harness(**settings: Any) -> Harness:
    clock = FakeClock()
    app, auth, _ = build_app(settings=make_settings(**settings), clock=clock)
    harness = Harness(TestClient(app), auth, clock)
    _HARNESSES.append(harness)
    return harness


@pytest.fixture(autouse=True)
def _no_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    _HARNESSES.clear()
    del _KEYS[1:]
    with caplog.at_level(logging.DEBUG, logger="heygen_conventions"):
        yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    for harness in _HARNESSES:
        assert_nothing_leaked(records, harness.responses, *harness.sent, *_KEYS)


@pytest.fixture
def hs() -> Harness:
    return make_harness()


@pytest.fixture
def rs(rsa_keys: KeyPair) -> Harness:
    _KEYS.append(rsa_keys.private_pem)
    return make_harness(jwt_algorithm="RS256", jwt_private_key=rsa_keys.private_pem)


@pytest.fixture
def es(ec_keys: KeyPair) -> Harness:
    _KEYS.append(ec_keys.private_pem)
    return make_harness(jwt_algorithm="ES256", jwt_private_key=ec_keys.private_pem)


def assert_invalid(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["success"] is False


# --- the baseline the attacks are measured against --------------------------------


def test_hand_made_valid_token_is_accepted(hs: Harness) -> None:
    response = hs.get(forge(hs.claims()))
    assert response.status_code == 200, response.text


def test_hand_made_rs256_token_is_accepted(rs: Harness, rsa_keys: KeyPair) -> None:
    response = rs.get(forge(rs.claims(), alg="RS256", key=rsa_keys.private))
    assert response.status_code == 200, response.text


def test_hand_made_es256_token_is_accepted(es: Harness, ec_keys: KeyPair) -> None:
    response = es.get(forge(es.claims(), alg="ES256", key=ec_keys.private))
    assert response.status_code == 200, response.text


# --- algorithm -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_without_signature(hs: Harness, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(hs.claims())}."
    assert_invalid(hs.get(token))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_with_signature(hs: Harness, alg: str) -> None:
    valid = forge(hs.claims())
    token = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{valid.split('.')[1]}.{valid.split('.')[2]}"
    assert_invalid(hs.get(token))


@pytest.mark.parametrize("form", ["pem", "der", "openssh"])
def test_hs256_signed_with_the_rsa_public_key(rs: Harness, rsa_keys: KeyPair, form: str) -> None:
    key = {
        "pem": rsa_keys.public_pem,
        "der": rsa_keys.public_der,
        "openssh": rsa_keys.public_ssh,
    }[form]
    assert_invalid(rs.get(forge(rs.claims(), alg="HS256", key=key)))


@pytest.mark.parametrize("form", ["pem", "der", "openssh"])
def test_hs256_signed_with_the_ec_public_key(es: Harness, ec_keys: KeyPair, form: str) -> None:
    key = {"pem": ec_keys.public_pem, "der": ec_keys.public_der, "openssh": ec_keys.public_ssh}[
        form
    ]
    assert_invalid(es.get(forge(es.claims(), alg="HS256", key=key)))


def test_alg_outside_the_allow_list(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(), alg="HS512")))


def test_alg_missing(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(), header={"typ": "JWT"})))


def test_alg_not_a_string(hs: Harness) -> None:
    valid = forge(hs.claims())
    _, payload, signature = valid.split(".")
    assert_invalid(hs.get(f"{b64json({'alg': ['HS256']})}.{payload}.{signature}"))


def test_es256_token_presented_to_an_rs256_server(rs: Harness, ec_keys: KeyPair) -> None:
    assert_invalid(rs.get(forge(rs.claims(), alg="ES256", key=ec_keys.private)))


def test_rs256_token_signed_by_another_key(rs: Harness, rsa_keys_2: KeyPair) -> None:
    assert_invalid(rs.get(forge(rs.claims(), alg="RS256", key=rsa_keys_2.private)))


# --- structure --------------------------------------------------------------------


def test_flipped_signature_byte(hs: Harness) -> None:
    header, payload, signature = forge(hs.claims()).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 0x01
    assert_invalid(hs.get(f"{header}.{payload}.{b64(bytes(raw))}"))


def test_flipped_payload_byte(hs: Harness) -> None:
    header, payload, signature = forge(hs.claims(sub="alice")).split(".")
    forged = b64json(hs.claims(sub="root"))
    assert forged != payload
    assert_invalid(hs.get(f"{header}.{forged}.{signature}"))


def test_non_canonical_signature_encoding(hs: Harness) -> None:
    header, payload, signature = forge(hs.claims()).split(".")
    # 32 bytes -> 43 chars whose last carries 2 unused bits: set one.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(signature[-1]) | 1]
    assert last != signature[-1]
    assert_invalid(hs.get(f"{header}.{payload}.{signature[:-1]}{last}"))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(
            lambda t: t.replace(t.split(".")[0], "!!" + t.split(".")[0][2:]), id="bad-char"
        ),
        pytest.param(lambda t: t.replace(".", ".=", 1), id="padding"),
        pytest.param(lambda t: "A" + t, id="bad-length"),
        pytest.param(lambda t: t.replace(".", " .", 1), id="space"),
        pytest.param(lambda t: t[:10] + "\u00e9" + t[11:], id="non-ascii"),
    ],
)
def test_bad_base64(hs: Harness, mangle: Any) -> None:
    assert_invalid(hs.get(mangle(forge(hs.claims()))))


@pytest.mark.parametrize("segments", [1, 2, 4, 5])
def test_wrong_segment_count(hs: Harness, segments: int) -> None:
    parts = forge(hs.claims()).split(".")
    token = ".".join((parts * 2)[:segments])
    assert_invalid(hs.get(token))


@pytest.mark.parametrize(
    "payload",
    [b"[1,2]", b'"alice"', b"42", b"null", b"{not json", b"\xff\xfe"],
    ids=["array", "string", "number", "null", "broken", "not-utf8"],
)
def test_payload_not_a_json_object(hs: Harness, payload: bytes) -> None:
    assert_invalid(hs.get(forge(payload)))


def test_header_not_a_json_object(hs: Harness) -> None:
    _, payload, _ = forge(hs.claims()).split(".")
    header = b64(b'["HS256"]')
    signing_input = f"{header}.{payload}"
    token = f"{signing_input}.{b64(sign(signing_input.encode(), 'HS256', SECRET))}"
    assert_invalid(hs.get(token))


# --- headers ----------------------------------------------------------------------


def test_unknown_crit(hs: Harness) -> None:
    header = {"alg": "HS256", "typ": "JWT", "crit": ["exp-ext"], "exp-ext": 1}
    assert_invalid(hs.get(forge(hs.claims(), header=header)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("jwk", {"kty": "oct", "k": b64(SECRET.encode())}),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("zip", "DEF"),
    ],
)
def test_key_by_reference_and_zip_headers(hs: Harness, name: str, value: Any) -> None:
    header = {"alg": "HS256", "typ": "JWT", name: value}
    assert_invalid(hs.get(forge(hs.claims(), header=header)))


def test_jwe_enc_header(hs: Harness) -> None:
    header = {"alg": "HS256", "enc": "A256GCM"}
    assert_invalid(hs.get(forge(hs.claims(), header=header)))


@pytest.mark.parametrize("typ", ["JWE", "secevent+jwt", 1])
def test_wrong_typ(hs: Harness, typ: Any) -> None:
    assert_invalid(hs.get(forge(hs.claims(), header={"alg": "HS256", "typ": typ})))


def test_unknown_kid(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(), header={"alg": "HS256", "kid": "k-unknown"})))


@pytest.mark.parametrize("kid", ["../../../../dev/null", "/etc/passwd", "' OR 1=1 --"])
def test_path_traversal_kid(hs: Harness, kid: str) -> None:
    assert_invalid(hs.get(forge(hs.claims(), header={"alg": "HS256", "kid": kid})))


@pytest.mark.parametrize("kid", [123, ["a"], {"a": 1}, None])
def test_non_string_kid(hs: Harness, kid: Any) -> None:
    header = {"alg": "HS256", "kid": kid}
    response = hs.get(forge(hs.claims(), header=header))
    if kid is None:
        # An explicit null kid is "no kid": the default key verifies it.
        assert response.status_code == 200, response.text
    else:
        assert_invalid(response)


# --- time ---------------------------------------------------------------------------


def test_expired(hs: Harness) -> None:
    now = int(hs.clock.now)
    assert_invalid(hs.get(forge(hs.claims(iat=now - 700, nbf=now - 700, exp=now - 100))))


def test_exp_exactly_now(hs: Harness) -> None:
    now = int(hs.clock.now)
    token = forge(hs.claims(iat=now - 600, nbf=now - 600, exp=now))
    response = hs.get(token)
    assert_invalid(response)
    assert response.json()["errors"][0]["code"] == "token_expired"


def test_exp_one_second_ahead_is_accepted(hs: Harness) -> None:
    now = int(hs.clock.now)
    response = hs.get(forge(hs.claims(iat=now - 600, exp=now + 1)))
    assert response.status_code == 200, response.text


def test_exp_within_leeway_is_accepted() -> None:
    harness = make_harness(jwt_leeway=30)
    now = int(harness.clock.now)
    response = harness.get(forge(harness.claims(iat=now - 600, nbf=now - 600, exp=now - 29)))
    assert response.status_code == 200, response.text


def test_exp_beyond_leeway() -> None:
    harness = make_harness(jwt_leeway=30)
    now = int(harness.clock.now)
    assert_invalid(harness.get(forge(harness.claims(iat=now - 600, nbf=now - 600, exp=now - 30))))


def test_exp_missing(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(exp=None))))


@pytest.mark.parametrize(
    "exp",
    ["9999999999", [9999999999], {"t": 1}, True],
    ids=["string", "list", "object", "bool"],
)
def test_exp_not_a_number(hs: Harness, exp: Any) -> None:
    assert_invalid(hs.get(forge(hs.claims(exp=exp))))


def test_exp_null(hs: Harness) -> None:
    claims = hs.claims()
    claims["exp"] = None
    assert_invalid(hs.get(forge(claims)))


def test_exp_1e308(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(exp=1e308))))


def test_exp_beyond_float_range(hs: Harness) -> None:
    claims = hs.claims(exp=None)
    body = ('{"exp":1e400,' + json.dumps(claims)[1:]).encode()
    assert_invalid(hs.get(forge(body)))


def test_nbf_in_the_future_beyond_leeway(hs: Harness) -> None:
    now = int(hs.clock.now)
    assert_invalid(hs.get(forge(hs.claims(nbf=now + 60))))


def test_iat_in_the_future_beyond_leeway(hs: Harness) -> None:
    now = int(hs.clock.now)
    assert_invalid(hs.get(forge(hs.claims(iat=now + 60, nbf=now, exp=now + 600))))


def test_nbf_and_iat_within_leeway_are_accepted() -> None:
    harness = make_harness(jwt_leeway=30)
    now = int(harness.clock.now)
    token = forge(harness.claims(iat=now + 20, nbf=now + 20, exp=now + 600))
    assert harness.get(token).status_code == 200


def test_iat_missing(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(iat=None))))


@pytest.mark.parametrize("value", ["now", [1]], ids=["string", "list"])
def test_nbf_not_a_number(hs: Harness, value: Any) -> None:
    assert_invalid(hs.get(forge(hs.claims(nbf=value))))


def test_lifetime_over_the_maximum(hs: Harness) -> None:
    now = int(hs.clock.now)
    assert_invalid(hs.get(forge(hs.claims(iat=now, exp=now + 31 * 86400))))


def test_exp_before_iat(hs: Harness) -> None:
    now = int(hs.clock.now)
    assert_invalid(hs.get(forge(hs.claims(iat=now, nbf=now - 100, exp=now - 1))))


# --- audience and issuer --------------------------------------------------------------


@pytest.fixture
def scoped() -> Harness:
    return make_harness(jwt_issuer="https://id.example", jwt_audience="videos-api")


def test_aud_and_iss_correct_are_accepted(scoped: Harness) -> None:
    token = forge(scoped.claims(iss="https://id.example", aud="videos-api"))
    assert scoped.get(token).status_code == 200


def test_aud_list_containing_ours_is_accepted(scoped: Harness) -> None:
    token = forge(scoped.claims(iss="https://id.example", aud=["other", "videos-api"]))
    assert scoped.get(token).status_code == 200


def test_aud_missing(scoped: Harness) -> None:
    assert_invalid(scoped.get(forge(scoped.claims(iss="https://id.example"))))


@pytest.mark.parametrize("aud", ["billing-api", ["billing-api"], [], 7, ["videos-api", 7]])
def test_aud_wrong(scoped: Harness, aud: Any) -> None:
    assert_invalid(scoped.get(forge(scoped.claims(iss="https://id.example", aud=aud))))


def test_iss_missing(scoped: Harness) -> None:
    assert_invalid(scoped.get(forge(scoped.claims(aud="videos-api"))))


def test_iss_wrong(scoped: Harness) -> None:
    token = forge(scoped.claims(iss="https://evil.example", aud="videos-api"))
    assert_invalid(scoped.get(token))


@pytest.mark.parametrize("iss", [7, ["https://id.example"]])
def test_iss_not_a_string_without_a_configured_issuer(hs: Harness, iss: Any) -> None:
    assert_invalid(hs.get(forge(hs.claims(iss=iss))))


def test_aud_sent_to_a_service_without_an_audience(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(aud="videos-api"))))


# --- token type and subject -------------------------------------------------------------


def test_refresh_token_used_as_access_token(hs: Harness) -> None:
    assert_invalid(hs.get(hs.auth.create_refresh_token("alice")))


@pytest.mark.parametrize("kind", [None, "id", "Access", 1])
def test_type_claim_missing_or_unknown(hs: Harness, kind: Any) -> None:
    claims = hs.claims()
    if kind is None:
        del claims["type"]
    else:
        claims["type"] = kind
    assert_invalid(hs.get(forge(claims)))


def test_sub_missing(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(sub=None))))


def test_sub_empty(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(sub=""))))


@pytest.mark.parametrize("sub", [42, ["alice"], {"id": "alice"}, True])
def test_sub_not_a_string(hs: Harness, sub: Any) -> None:
    assert_invalid(hs.get(forge(hs.claims(sub=sub))))


def test_sub_unknown_user(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(sub="mallory"))))


def test_sub_inactive_user(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims(sub="bob"))))


def test_jti_missing(hs: Harness) -> None:
    # Without a jti the token could never be revoked individually.
    assert_invalid(hs.get(forge(hs.claims(jti=None))))


@pytest.mark.parametrize("claim", ["roles", "scope"])
def test_malformed_roles_or_scope(hs: Harness, claim: str) -> None:
    assert_invalid(hs.get(forge(hs.claims(**{claim: {"admin": True}}))))


# --- transport ----------------------------------------------------------------------------


def test_no_authorization_header(hs: Harness) -> None:
    response = hs.get(None)
    assert_invalid(response)
    assert response.headers["www-authenticate"] == "Bearer"


def test_basic_scheme(hs: Harness) -> None:
    assert_invalid(hs.get("YWxpY2U6c2VjcmV0", scheme="Basic"))


def test_token_without_scheme(hs: Harness) -> None:
    assert_invalid(hs.get(forge(hs.claims()), scheme=""))


def test_bearer_with_empty_value(hs: Harness) -> None:
    assert_invalid(hs.get("", scheme="Bearer"))


def test_bearer_with_two_tokens(hs: Harness) -> None:
    token = forge(hs.claims())
    assert_invalid(hs.get(f"{token} {token}"))


def test_lowercase_bearer_scheme_is_accepted(hs: Harness) -> None:
    assert hs.get(forge(hs.claims()), scheme="bearer").status_code == 200


def test_10kb_token(hs: Harness) -> None:
    token = forge(hs.claims(pad="x" * 10_000))
    assert len(token) > 10_000
    assert_invalid(hs.get(token))


def test_1mb_token(hs: Harness) -> None:
    token = forge(hs.claims(pad="x" * 1_000_000))
    assert len(token) > 1_000_000
    assert_invalid(hs.get(token))


# --- revocation and roles -------------------------------------------------------------------


def test_revoked_jti(hs: Harness) -> None:
    token = hs.auth.create_access_token("alice")
    assert hs.get(token).status_code == 200
    hs.sent.append(token)
    revoked = hs.client.post("/logout", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"revoked": True}
    assert_invalid(hs.get(token))


def test_token_issued_before_the_users_cutoff(hs: Harness) -> None:
    now = int(hs.clock.now)
    old = forge(hs.claims(iat=now - 60, nbf=now - 60))
    assert hs.get(old).status_code == 200
    asyncio.run(hs.auth.revoke_tokens_issued_before("alice"))
    assert_invalid(hs.get(old))
    fresh = hs.auth.create_access_token("alice")  # same second as the cutoff
    assert hs.get(fresh).status_code == 200
    other = forge(hs.claims(sub="root", iat=now - 60, nbf=now - 60))
    assert hs.get(other).status_code == 200


def test_non_admin_on_admin_route_is_403(hs: Harness) -> None:
    response = hs.get(forge(hs.claims(roles=["admin"])), path="/admin")
    assert response.status_code == 403, response.text


def test_missing_scope_is_403(hs: Harness) -> None:
    response = hs.get(forge(hs.claims(scope="videos:read")), path="/videos/write")
    assert response.status_code == 403, response.text
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
