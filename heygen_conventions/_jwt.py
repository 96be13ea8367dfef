"""The token codec: the only module that touches python-jose.

python-jose supplies the keys and the signature primitives (``jwk.construct``
and ``Key.sign`` / ``Key.verify``). Parsing the compact form and checking the
header and the registered claims are done here instead of by
``jose.jwt.decode``, which trusts the token's ``alg`` when no list is given,
accepts a token without ``exp``, accepts a missing ``aud`` unless told
otherwise, ignores ``crit``, has no size limit, raises a bare ``TypeError`` on a
non-numeric ``exp``, and rebuilds the key from the secret on every call.

Every rule is decided when the codec is built (algorithm allow-list, one key
per ``(kid, alg)``, issuer, audience, leeway, maximum lifetime and size), so a
misconfiguration fails at startup and verification reads no configuration.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import load_der_x509_certificate, load_pem_x509_certificate
from jose import jwk
from jose.exceptions import JOSEError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "ConfigurationError",
    "ExpiredTokenError",
    "JWTCodec",
    "TokenError",
]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
_EC_ALGORITHMS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
ASYMMETRIC_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHMS) | {"EdDSA"}

# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# RFC 7518 section 3.3 asks for 2048 bits or more.
_RSA_MIN_BITS = 2048

# Headers that make a verifier fetch, trust or unpack something named by the
# token itself (RFC 8725 sections 3.10 and 2.6), or that mark a JWE, a nested
# JWT or an extension we would have to understand.
_REFUSED_HEADERS = frozenset({"crit", "jku", "jwk", "x5u", "x5c", "zip", "enc", "cty", "b64"})
# ``typ`` is optional; when present it must say this is a JWT (RFC 8725 section 3.11).
_ACCEPTED_TYP = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})

# Compact JWS: three base64url segments, nothing else (no padding, no spaces).
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

_MAX_KID_LENGTH = 256


class ConfigurationError(ValueError):
    """The keys or rules given to the codec are unsafe or inconsistent."""


class TokenError(Exception):
    """A token was refused; ``reason`` is a short, loggable word (never token content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExpiredTokenError(TokenError):
    """The token's ``exp`` (plus leeway) has passed."""

    def __init__(self) -> None:
        super().__init__("expired")


class _Signer(Protocol):
    def sign(self, msg: bytes) -> bytes: ...

    def verify(self, msg: bytes, sig: bytes) -> bool: ...


class _EdDSAKey:
    """EdDSA (RFC 8037), which python-jose 3.5 does not implement; confined to this codec."""

    def __init__(
        self,
        key: ed25519.Ed25519PublicKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PublicKey
        | ed448.Ed448PrivateKey,
    ) -> None:
        self._key = key

    def sign(self, msg: bytes) -> bytes:
        if not isinstance(self._key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            raise ConfigurationError("an EdDSA public key cannot sign")  # pragma: no cover
        return self._key.sign(msg)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        public = (
            self._key.public_key()
            if isinstance(self._key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
            else self._key
        )
        try:
            public.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise TokenError("malformed") from None
    if type(value) is not dict:
        raise TokenError("malformed")
    return value


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    # bool is an int subclass, and a float may be inf/nan; both are refused.
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise TokenError(f"invalid_{name}")
        return None
    if type(value) is int:
        return float(value)
    if type(value) is float and math.isfinite(value):
        return value
    raise TokenError(f"invalid_{name}")


# --- building keys -----------------------------------------------------------


def _looks_like_public_key(secret: bytes) -> bool:
    """True when ``secret`` parses as key material: using it as an HMAC secret
    would let anyone who knows the public key forge tokens."""
    stripped = secret.strip()
    if b"-----BEGIN" in stripped or stripped.startswith((b"ssh-", b"ecdsa-sha2-")):
        return True
    if stripped.startswith(b"{"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and ("kty" in parsed or "keys" in parsed):
            return True
    # Raw DER as given too: its last byte may be one strip() takes (0x0a, 0x20...).
    candidates = [secret, stripped]
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(stripped, validate=True))
    # base64url without padding, as JWK members and some tools write DER.
    unpadded = stripped.rstrip(b"=")
    if re.fullmatch(rb"[A-Za-z0-9_-]+", unpadded):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.urlsafe_b64decode(unpadded + b"=" * (-len(unpadded) % 4)))
    for candidate in candidates:
        for loader in (
            serialization.load_der_public_key,
            serialization.load_ssh_public_key,
            # An X.509 certificate (a JWKS's x5c is one, base64 DER) carries a public key.
            load_der_x509_certificate,
        ):
            try:
                loader(candidate)
            except Exception:  # noqa: S112 - any parse failure means "not this format"
                continue
            return True
    return False


def _hmac_secret(secret: str | bytes, algorithms: Sequence[str], what: str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if _looks_like_public_key(raw):
        raise ConfigurationError(
            f"{what} is key material (PEM, DER, OpenSSH or JWK); an HMAC secret must be "
            "random bytes, never a public key"
        )
    needed = max(_HMAC_MIN_BYTES[alg] for alg in algorithms)
    if len(raw) < needed:
        raise ConfigurationError(
            f"{what} is {len(raw)} bytes; {', '.join(sorted(algorithms))} needs at least "
            f"{needed} bytes"
        )
    return raw


_PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def _load_public_key(pem: str, what: str) -> _PublicKey:
    data = pem.encode("utf-8")
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigurationError(f"{what} is not a PEM public key or certificate") from None
    if not isinstance(key, _PublicKey):
        raise ConfigurationError(f"{what} is a {type(key).__name__}, not an RSA, EC or Ed key")
    return key


def _load_private_key(pem: str, what: str) -> _PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(f"{what} is not an unencrypted PEM private key") from None
    if not isinstance(key, _PrivateKey):
        raise ConfigurationError(f"{what} is a {type(key).__name__}, not an RSA, EC or Ed key")
    return key


def _algorithms_for(key: _PublicKey, allowed: Sequence[str], what: str) -> list[str]:
    """The allowed algorithms ``key`` may verify, refusing weak or mismatched keys."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _RSA_MIN_BITS:
            raise ConfigurationError(
                f"{what} is a {key.key_size}-bit RSA key; at least {_RSA_MIN_BITS} bits needed"
            )
        usable = [alg for alg in allowed if alg in _RSA_ALGORITHMS]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        usable = [alg for alg in allowed if _EC_ALGORITHMS.get(alg) == key.curve.name]
    else:
        usable = [alg for alg in allowed if alg == "EdDSA"]
    if not usable:
        raise ConfigurationError(
            f"{what} ({type(key).__name__}) cannot be used with any of the allowed "
            f"algorithms {sorted(allowed)}"
        )
    return usable


def _public_signer(key: _PublicKey, alg: str) -> _Signer:
    if alg == "EdDSA":
        assert isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
        return _EdDSAKey(key)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return jwk.construct(pem, alg)


def _private_signer(key: _PrivateKey, alg: str) -> _Signer:
    if alg == "EdDSA":
        assert isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        return _EdDSAKey(key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jwk.construct(pem, alg)


def _same_key(a: _PublicKey, b: _PublicKey) -> bool:
    encoding, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(encoding, fmt) == b.public_bytes(encoding, fmt)


class JWTCodec:
    """Signs and verifies compact JWS tokens under one fixed set of rules.

    Args:
        algorithms: The allow-list. All HMAC (``HS*``) or all asymmetric
            (``RS*``, ``ES*``, ``EdDSA``), never both.
        signing_algorithm: Algorithm of the tokens this codec signs.
        secret: HMAC secret (signs and verifies).
        verification_secrets: Older HMAC secrets by ``kid``, verify only.
        private_key: PEM private key (signs; its public half verifies).
        public_keys: PEM public keys or certificates by ``kid``, verify only.
        signing_kid: ``kid`` header of signed tokens.
        issuer: ``iss`` to set and require.
        audience: ``aud`` to set and require; without it a token carrying
            ``aud`` is refused (it was meant for another service).
        leeway: Seconds of clock skew allowed for ``exp``, ``nbf`` and ``iat``.
        max_lifetime: Longest ``exp - iat`` accepted, in seconds.
        max_token_bytes: Longer tokens are refused before any parsing.
        clock: Current time in seconds since the epoch.

    Raises:
        ConfigurationError: Any unsafe or inconsistent combination.
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        signing_algorithm: str | None = None,
        secret: str | bytes | None = None,
        verification_secrets: Mapping[str, str | bytes] | None = None,
        private_key: str | None = None,
        public_keys: Mapping[str, str] | None = None,
        signing_kid: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 0.0,
        max_lifetime: float = 30 * 86400.0,
        max_token_bytes: int = 8192,
        clock: Callable[[], float] = time.time,
    ) -> None:
        allowed = list(dict.fromkeys(algorithms))
        if not allowed:
            raise ConfigurationError("the algorithm allow-list is empty")
        unknown = [a for a in allowed if a not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
        if unknown:
            raise ConfigurationError(
                f"unsupported algorithms {unknown}; choose from "
                f"{sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS)} ('none' is never allowed)"
            )
        hmac_algs = [a for a in allowed if a in HMAC_ALGORITHMS]
        if hmac_algs and len(hmac_algs) != len(allowed):
            raise ConfigurationError(
                f"the allow-list {allowed} mixes HMAC and asymmetric algorithms: a verifier "
                "holding a public key would accept HMAC tokens keyed with that public key"
            )
        if signing_algorithm is not None and signing_algorithm not in allowed:
            raise ConfigurationError(
                f"the signing algorithm {signing_algorithm!r} is not in the allow-list {allowed}"
            )
        if leeway < 0 or max_lifetime <= 0 or max_token_bytes < 64:
            raise ConfigurationError(
                "leeway must be >= 0, max_lifetime > 0 and max_token_bytes >= 64"
            )
        if signing_kid is not None and not 0 < len(signing_kid) <= _MAX_KID_LENGTH:
            raise ConfigurationError(f"signing_kid must be 1 to {_MAX_KID_LENGTH} characters")

        self.algorithms = frozenset(allowed)
        self.issuer = issuer
        self.audience = audience
        self.leeway = float(leeway)
        self.max_lifetime = float(max_lifetime)
        self.max_token_bytes = max_token_bytes
        self.clock = clock
        self._signing_algorithm = signing_algorithm
        self._signing_kid = signing_kid
        self._signer: _Signer | None = None
        # One prepared key per (kid, alg): the token's kid and alg only select
        # among keys built here, never name a key to load.
        self._keys: dict[tuple[str | None, str], _Signer] = {}

        if hmac_algs:
            self._build_hmac(
                hmac_algs, secret, verification_secrets or {}, private_key, public_keys
            )
        else:
            self._build_asymmetric(allowed, secret, verification_secrets, private_key, public_keys)

        header: dict[str, str] = {"alg": signing_algorithm or allowed[0], "typ": "JWT"}
        if signing_kid is not None:
            header["kid"] = signing_kid
        self._encoded_header = _b64encode(orjson.dumps(header))

    def _build_hmac(
        self,
        algs: list[str],
        secret: str | bytes | None,
        verification_secrets: Mapping[str, str | bytes],
        private_key: str | None,
        public_keys: Mapping[str, str] | None,
    ) -> None:
        if private_key is not None or public_keys:
            raise ConfigurationError(
                f"the allow-list {algs} is HMAC but asymmetric keys are configured; "
                "use an RS*/ES*/EdDSA allow-list with PEM keys, or drop the keys"
            )
        if secret is None and not verification_secrets:
            raise ConfigurationError(f"{algs} needs a secret")
        if secret is not None:
            raw = _hmac_secret(secret, algs, "the JWT secret")
            for alg in algs:
                key = jwk.construct(raw, alg)
                self._keys[(None, alg)] = key
                if self._signing_kid is not None:
                    self._keys[(self._signing_kid, alg)] = key
            if self._signing_algorithm is not None:
                self._signer = self._keys[(None, self._signing_algorithm)]
        for kid, old in verification_secrets.items():
            if kid == self._signing_kid:
                raise ConfigurationError(f"verification secret kid {kid!r} is the signing kid")
            raw = _hmac_secret(old, algs, f"the verification secret {kid!r}")
            for alg in algs:
                self._keys[(kid, alg)] = jwk.construct(raw, alg)

    def _build_asymmetric(
        self,
        allowed: list[str],
        secret: str | bytes | None,
        verification_secrets: Mapping[str, str | bytes] | None,
        private_key: str | None,
        public_keys: Mapping[str, str] | None,
    ) -> None:
        if verification_secrets:
            raise ConfigurationError(
                f"the allow-list {allowed} is asymmetric but HMAC verification secrets are set"
            )
        # A configured HMAC secret is simply unused here: settings fill in a
        # development secret, and it never verifies anything under this list.
        del secret
        public_keys = dict(public_keys or {})
        if private_key is None and not public_keys:
            raise ConfigurationError(f"{allowed} needs a PEM private key or public keys")
        loaded = {
            kid: _load_public_key(pem, f"public key {kid!r}") for kid, pem in public_keys.items()
        }
        default: _PublicKey | None = None
        if private_key is not None:
            private = _load_private_key(private_key, "the JWT private key")
            public = private.public_key()
            usable = _algorithms_for(public, allowed, "the JWT private key")
            signing_alg = self._signing_algorithm or usable[0]
            if signing_alg not in usable:
                raise ConfigurationError(
                    f"the JWT private key ({type(public).__name__}) cannot sign {signing_alg}"
                )
            self._signing_algorithm = signing_alg
            self._signer = _private_signer(private, signing_alg)
            if self._signing_kid is not None:
                existing = loaded.get(self._signing_kid)
                if existing is not None and not _same_key(existing, public):
                    raise ConfigurationError(
                        f"public key {self._signing_kid!r} is not the public half of the "
                        "private key signing under that kid"
                    )
                loaded[self._signing_kid] = public
            default = public
        elif len(loaded) == 1:
            default = next(iter(loaded.values()))
        for kid, key in loaded.items():
            for alg in _algorithms_for(key, allowed, f"public key {kid!r}"):
                self._keys[(kid, alg)] = _public_signer(key, alg)
        if default is not None:
            for alg in _algorithms_for(default, allowed, "the default key"):
                self._keys[(None, alg)] = _public_signer(default, alg)

    @property
    def can_sign(self) -> bool:
        return self._signer is not None

    def encode(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims`` as they are (the caller sets ``exp``, ``iat`` and the rest)."""
        if self._signer is None:
            raise ConfigurationError(
                "no signing key is configured (set the JWT secret or private key)"
            )
        signing_input = f"{self._encoded_header}.{_b64encode(orjson.dumps(claims))}"
        signature = self._signer.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64encode(signature)}"

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``.

        Raises:
            TokenError: The token is not exactly valid (``reason`` says why).
            ExpiredTokenError: It was valid and has expired.
        """
        if len(token) > self.max_token_bytes:
            raise TokenError("too_large")
        if _COMPACT.fullmatch(token) is None:
            raise TokenError("malformed")
        header_segment, payload_segment, signature_segment = token.split(".")
        header = _json_object(_b64decode(header_segment))
        alg = header.get("alg")
        if type(alg) is not str or alg not in self.algorithms:
            raise TokenError("algorithm")
        if not _REFUSED_HEADERS.isdisjoint(header):
            raise TokenError("header")
        typ = header.get("typ")
        if typ is not None and (type(typ) is not str or typ.lower() not in _ACCEPTED_TYP):
            raise TokenError("header")
        kid = header.get("kid")
        if kid is not None and type(kid) is not str:
            raise TokenError("kid")
        key = self._keys.get((kid, alg))
        if key is None:
            raise TokenError("kid")
        signature = _b64decode(signature_segment)
        # A non-canonical encoding (stray low bits) would give one signature
        # several spellings; the token must be exactly what was signed.
        if _b64encode(signature) != signature_segment:
            raise TokenError("malformed")
        signing_input = token[: len(header_segment) + 1 + len(payload_segment)].encode("ascii")
        try:
            valid = key.verify(signing_input, signature)
        except (JOSEError, ValueError, TypeError):
            valid = False
        if not valid:
            raise TokenError("signature")
        claims = _json_object(_b64decode(payload_segment))
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self.clock()
        exp = _numeric_date(claims, "exp")
        iat = _numeric_date(claims, "iat")
        nbf = _numeric_date(claims, "nbf")
        if exp is None:
            raise TokenError("missing_exp")
        if iat is None:
            raise TokenError("missing_iat")
        if iat > now + self.leeway:
            raise TokenError("issued_in_future")
        if nbf is not None and nbf > now + self.leeway:
            raise TokenError("not_yet_valid")
        if exp - iat > self.max_lifetime or exp <= iat:
            raise TokenError("lifetime")
        if now >= exp + self.leeway:
            raise ExpiredTokenError()
        sub = claims.get("sub")
        if type(sub) is not str or not sub:
            raise TokenError("invalid_sub")
        jti = claims.get("jti")
        if type(jti) is not str or not 0 < len(jti) <= 256:
            raise TokenError("invalid_jti")
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise TokenError("invalid_iss")
        aud = claims.get("aud")
        if self.audience is None:
            if aud is not None:
                raise TokenError("invalid_aud")
        elif not (
            aud == self.audience
            or (type(aud) is list and self.audience in aud and all(type(a) is str for a in aud))
        ):
            raise TokenError("invalid_aud")


def token_digest(token: str) -> bytes:
    """A fixed-size key for caching a token without keeping the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
