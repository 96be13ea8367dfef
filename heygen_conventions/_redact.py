"""Keep secrets out of log lines: by key at any depth, and inside free text."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

#: Names whose values never reach a log line. A key is compared word by word
#: (``accessToken``, ``X-Auth-Token``, ``db.password`` and ``CLIENT_SECRET``
#: split into lower-case words at case changes, ``-``, ``_``, ``.`` and
#: spaces): it is secret when its words contain one of these names, in any
#: position (``db_password``, ``password_hash``, ``x_api_key``), a word ends
#: with one (``authtoken``, ``clientsecret``) or is one written in one piece
#: (``apikey``, ``sessionid``); plurals and trailing digits count
#: (``credentials``, ``password2``). It stays readable when the words after
#: the name only describe it (``token_type``, ``expires_in``, ``cookie_name``;
#: see ``_DESCRIPTIVE``) or when it counts tokens (``max_tokens``).
DEFAULT_REDACTED_KEYS: frozenset[str] = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth_header",
        "authorization",
        "basic_auth",
        "client_secret",
        "cookie",
        "credential",
        "credentials",
        "creds",
        "csrf",
        "encryption_key",
        "id_token",
        "jwt",
        "otp",
        "passphrase",
        "passwd",
        "password",
        "private_key",
        "proxy_authorization",
        "pwd",
        "refresh_token",
        "secret",
        "secret_key",
        "sessid",
        "session",
        "session_id",
        "set_cookie",
        "signing_key",
        "token",
        "xsrf",
    }
)

REDACTED = "[REDACTED]"

# Words that, following a secret name, describe the secret instead of holding
# it: ``token_type``, ``token_expires_in``, ``cookie_max_age``, ``secret_name``.
# Anything else after the name (``password_hash``, ``session_id``,
# ``token_value``) keeps the key secret.
_DESCRIPTIVE = frozenset(
    {
        "age",
        "alg",
        "algorithm",
        "algorithms",
        "at",
        "audience",
        "changed",
        "count",
        "counts",
        "created",
        "domain",
        "duration",
        "enabled",
        "endpoint",
        "error",
        "errors",
        "exp",
        "expiration",
        "expired",
        "expires",
        "expiry",
        "field",
        "format",
        "httponly",
        "in",
        "issued",
        "issuer",
        "kind",
        "len",
        "length",
        "lifetime",
        "limit",
        "limits",
        "location",
        "max",
        "min",
        "missing",
        "ms",
        "name",
        "names",
        "num",
        "number",
        "path",
        "policy",
        "present",
        "provided",
        "refreshed",
        "required",
        "rotated",
        "samesite",
        "scheme",
        "sec",
        "seconds",
        "secs",
        "secure",
        "size",
        "source",
        "status",
        "strength",
        "ttl",
        "type",
        "types",
        "updated",
        "uri",
        "url",
        "usage",
        "used",
        "valid",
        "version",
    }
)

# Words before a plural secret name that make the key a count:
# ``max_tokens``, ``input_tokens``, ``total_tokens`` (``access_tokens`` is secret).
_COUNTING = frozenset(
    {"cached", "completion", "input", "max", "min", "n", "num", "output", "prompt", "total"}
)

# A name this long also matches as the end of a word (``authtoken``); shorter
# ones (``otp``, ``pwd``, ``jwt``) only as whole words.
_MIN_SUFFIX = 5

# Keys whose free-text value runs to the end of the line: header values hold
# spaces and separators (``Digest username="a", response="b"``, ``a=1; b=2``).
_LINE_VALUED = (("authorization",), ("cookie",), ("cookies",))

# Authorization schemes kept readable in front of the masked credentials.
_SCHEME = re.compile(
    r"(?i)(aws4-hmac-sha256|basic|bearer|digest|dpop|gnap|hmac|hoba|mutual|negotiate|"
    r"ntlm|oauth|scram-sha-1|scram-sha-256|token|api-?key|vapid)[ \t]+(?=\S)"
)

# Nested values deeper than this are replaced rather than walked: a cycle or a
# hostile structure must not cost unbounded time, and what is not walked is
# not logged.
_MAX_DEPTH = 16
_MAX_REPR = 4096
_KEY_CACHE_SIZE = 4096
# Strings known clean are remembered in two generations, each of at most
# this many strings and characters; a string longer than the last is scanned
# every time.
_CLEAN_CACHE_SIZE = 4096
_CLEAN_CACHE_CHARS = 1 << 20
_MAX_REMEMBERED_LENGTH = 1 << 16
# Longest value the access line keeps the JSON text of.
_MAX_CLEAN_LENGTH = 256
_MAX_KEY_LENGTH = 256

_SCALARS = frozenset({int, float, bool, type(None)})
_SEQUENCES = (list, tuple, set, frozenset)
_BYTES = (bytes, bytearray, memoryview)

# Structlog keys holding exception objects the renderer formats itself.
_UNWALKED_KEYS = frozenset({"exc_info"})

# A b64token: ``token_type=bearer expires_in=3600`` holds none.
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]++=*+(?![\w=])")
_BASIC = re.compile(r"(?i)\b(basic)[ \t]+([A-Za-z0-9+/]{4,}={0,2})(?![\w+/=])")
# A JWT: a header (``eyJ``, base64url of ``{"``, to the end of its run), then
# ``.payload`` and an optional ``.signature``. Found by _mask_jwts, which skips
# a whole run once its header fails: every ``-eyJ`` in ``eyJ-eyJ-...`` starts
# a header ending where the first one does, and trying each would be quadratic.
_JWT_HEADER = re.compile(r"\beyJ[A-Za-z0-9_-]++")
_JWT_REST = re.compile(r"\.[A-Za-z0-9_-]++(?:\.[A-Za-z0-9_-]*+)?")
# ``scheme://user:`` or ``scheme://user@``: where a URL's userinfo may start.
_URL_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://([^\s/?#@:\"'<>]*+)[:@]")
# A userinfo without a password, up to the last ``@`` before the host
# (``user@host``, ``ghp_...@github.com``; ``a@b:pw@host`` as browsers read it).
_URL_USER_ONLY = re.compile(r"[^\s/?#@\"'<>]*+(?:@[^\s/?#@\"'<>]*+)*@")
# More ``@`` where the host would start: ``user:p@ss@db`` holds one password.
_URL_HOST_AT = re.compile(r"(?:[^\s/?#@\"'<>]*+@)*")
_URL_AT_OR_LINE_END = re.compile(r"[@\r\n]")
# ``host:8080/path ... ann@example.com``: a port, not a password, before a later ``@``.
_URL_PORT = re.compile(r"\d{1,5}(?!\w)")
_WHITESPACE = re.compile(r"\s")
# ``name=value``, ``name: value``, ``"name": "value"`` and, in JSON held in a
# JSON string, ``\\"name\\": \\"value\\"``; the value is read by hand.
# ``name%3Dvalue`` is the same pair URL-encoded (a logged query string or form body).
_PAIR_KEY = re.compile(
    r"(?:(?<![\w.-])|(?<=%26))(-*[A-Za-z_][\w.-]*+)(\\*[\"']?[ \t]*(?:[:=]|%3[Dd])[ \t]*)"
)
# The word before a pair's key, one space apart: ``API Key: ...``, ``Access token = ...``.
_WORD_BEFORE = re.compile(r"(?<![\w.-])([A-Za-z][A-Za-z0-9]*+)[ \t]\Z")
# An XML or HTML element holding text only: ``<password>...</password>``.
_ELEMENT = re.compile(r"<([A-Za-z_][\w.:-]*+)(?:[ \t][^<>]*+)?>([^<]++)</\1[ \t]*>")
_QUALIFIED_NOUNS = frozenset({("key",), ("keys",), ("id",)})
_BACKSLASHES = re.compile(r"\\*")
_PLAIN_VALUE = re.compile(r"[^\s\"'&,;]+")
_ENCODED_VALUE = re.compile(r"(?:[^\s\"'&,;%]|%(?!26))+")  # up to the next encoded ``&``
# ``--password value`` on a command line (``--password=value`` is a pair above).
_FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*+)[ \t]++(?=[^\s-])")
_FLAG_VALUE = re.compile(r"\"[^\"\r\n]*+\"?|'[^'\r\n]*+'?|\S+")
# A multipart/form-data part (raw, or escaped as in a bytes repr): the field
# name in its header, the blank line before its value, the line starting the
# next part.
# The lazy scan for ``name=`` stops at the next part header: that header finds
# the same ``name=`` itself, and scanning on from every header on one long
# line would be quadratic.
_FORM_FIELD = re.compile(
    r"(?i)content-disposition:[ \t]*form-data\b"
    r"(?:(?!content-disposition:[ \t]*form-data\b)[^\r\n\\])*?"
    r"\bname=\\*\"?([^\"\\;\r\n]*)"
)
_FORM_VALUE_START = re.compile(r"\r?\n\r?\n|(?:\\r)?\\n(?:\\r)?\\n")
_FORM_VALUE_END = re.compile(r"(?:\r?\n|(?:\\r)?\\n)--")
# A pydantic ValidationError entry: the field's location alone on a line, then
# ``  <message> [type=..., input_value=<repr>, input_type=...]``.
_VALIDATION_INPUT = re.compile(
    r"(?m)^([^\s][^\r\n]*+)\r?\n[ \t]+[^\r\n]*?\[type=[\w-]*+, input_value="
)
_VALIDATION_INPUT_END = ", input_type="
_LINE_END = re.compile(r"[\r\n]")
# A ``(name, value)`` pair as Python prints it (``('cookie', 'sid=1')``,
# ``(b'x-api-key', b'...')``): ASGI and httpx header lists formatted into a
# message or an exception. The value is read by hand, up to its closing quote.
_TUPLE_PAIR = re.compile(r"""\(b?(['"])([^'"\\\r\n]{1,256})\1,[ \t]*b?(['"])""")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def key_words(key: str) -> tuple[str, ...]:
    """``key`` as lower-case words: ``X-Auth-Token`` and ``xAuthToken`` are ``x auth token``."""
    key = key[:_MAX_KEY_LENGTH]
    lowered = key.lower()
    if lowered != key:
        lowered = _CAMEL.sub("_", key).lower()
    return tuple(w for w in _NOT_WORD.split(lowered) if w)


def _stem(word: str) -> str:
    # ``password2`` reads as ``password``; ``2fa`` stays itself.
    return word.rstrip("0123456789") or word


class _Names:
    """The configured secret names, and the word-by-word test of a key against them."""

    def __init__(self, keys: Iterable[str]) -> None:
        names = {key_words(k) for k in keys if k and k.strip()}
        names.discard(())
        # Names of several words, by their first word.
        self.phrases: dict[str, list[tuple[str, ...]]] = {}
        for name in sorted(n for n in names if len(n) > 1):
            self.phrases.setdefault(name[0], []).append(name)
        # Written in one piece: ``apikey``, ``sessionid``, ``authtoken``.
        self.joined = {"".join(n) for n in names}
        self.suffixes = tuple(j for j in self.joined if len(j) >= _MIN_SUFFIX)
        # Every secret key, lowered, contains one of these: the longest word of
        # each name that holds no other name (``access_token`` holds ``token``).
        kept = [n for n in names if not any(o != n and _contains(n, o) for o in names)]
        stems = {max(n, key=len) for n in kept}
        self.stems = tuple(sorted(s for s in stems if not any(o != s and o in s for o in stems)))

    def secret(self, words: tuple[str, ...]) -> bool:
        joined = "".join(words)
        if not any(stem in joined for stem in self.stems):
            return False  # most keys: no secret name's word anywhere
        stems = tuple(_stem(w) for w in words)
        for index, word in enumerate(stems):
            for length, plural in self._matches(stems, index, word):
                if plural and index and stems[index - 1] in _COUNTING:
                    continue  # max_tokens, input_tokens: counts
                rest = stems[index + length :]
                if rest and all(w in _DESCRIPTIVE for w in rest):
                    continue  # token_type, cookie_max_age: about the secret
                return True
        return False

    def _matches(self, words: tuple[str, ...], index: int, word: str) -> Iterable[tuple[int, bool]]:
        """(number of words, plural) of each name found at ``words[index]``."""
        single = word[:-1] if word.endswith("s") else None
        for form, plural in ((word, False), (single, True)):
            if form is None:
                continue
            if form in self.joined or form.endswith(self.suffixes):
                yield 1, plural
        for name in self.phrases.get(word, ()):
            size = len(name)
            if index + size > len(words) or words[index : index + size - 1] != name[:-1]:
                continue
            last = words[index + size - 1]
            if last == name[-1]:
                yield size, False
            elif last == name[-1] + "s":
                yield size, True


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    size = len(part)
    return any(words[i : i + size] == part for i in range(len(words) - size + 1))


def _token_like(text: str) -> bool:
    # ``https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com``: a user
    # that long, with digits, is a credential; ``git@``, ``postgres@`` are not.
    return len(text) >= 16 and any(c.isdigit() for c in text)


def _mask_urls(text: str) -> str:
    """``text`` with the password (and a token used as user) of each URL masked.

    The password runs from ``user:`` to the ``@`` before the host, whatever it
    holds: SQLAlchemy reads ``postgresql://app:pa/ss#w?rd@db`` and
    ``app:s3cr3t p4ss@db`` as passwords, and generated passwords hold ``/``
    and ``+``. A raw ``@`` in it (``app:p@ss@db``) is read to the last ``@``
    in front of the host. In free text the colon may instead start a port
    (``http://api:8080 for ann@example.com``), so a candidate is left alone
    when it holds another URL, or spans words and starts with a space or a
    port number.
    """
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    # The next ``@`` or line end, and the next ``://``, after the latest colon:
    # found once for all the URLs before them, so hostile text stays linear.
    at = next_url = -1
    for match in _URL_USERINFO.finditer(text):
        after, user_end = match.span(1)
        if after < done:
            continue  # inside a userinfo already masked
        mark = text[user_end]
        if mark == ":":
            if at <= user_end:
                found = _URL_AT_OR_LINE_END.search(text, user_end + 1)
                at = found.start() if found is not None else len(text)
            if at == len(text) or text[at] != "@":
                continue  # host:port
            if next_url <= user_end:
                next_url = text.find("://", user_end)
                next_url = len(text) if next_url < 0 else next_url
            if next_url < at:
                continue  # ``http://a:1 and postgresql://...@``: the @ is another URL's
            password = text[user_end + 1 : at]
            if _WHITESPACE.search(password) is not None and (
                password[0].isspace() or _URL_PORT.match(password) is not None
            ):
                continue
            user, has_password = text[after:user_end], True
            end = _URL_HOST_AT.match(text, at + 1).end()  # type: ignore[union-attr]
        else:
            end = _URL_USER_ONLY.match(text, after).end()  # type: ignore[union-attr]
            user, colon, _ = text[after : end - 1].partition(":")
            has_password = bool(colon)
            if not has_password and not _token_like(user):
                continue  # ``git@github.com``, ``postgres@localhost``
        if _token_like(user):
            user = REDACTED
        parts.append(text[done:after])
        parts.append(f"{user}:{REDACTED}@" if has_password else f"{user}@")
        done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _closing_quote(text: str, start: int, limit: int, quote: str, escapes: int) -> int:
    """Where a quoted value starting at ``start`` ends: at its closing quote, else at ``limit``.

    ``escapes`` is the number of backslashes before the opening quote: 0 in
    ``"password": "..."``, 1 in JSON held in a JSON string
    (``\\"password\\": \\"...\\"``), 3 a level deeper. A quote inside the
    value is escaped at one more level than the delimiter (``\\"`` at level
    0, ``\\\\\\"`` at level 1): its backslash count ends, in binary, in at
    least one more 1 than ``escapes`` does. Any other quote closes the value.
    """
    ones = (~escapes & (escapes + 1)).bit_length()  # trailing 1 bits of escapes, plus one
    inner = (1 << ones) - 1
    position = start
    while (close := text.find(quote, position, limit)) >= 0:
        run = close
        while run > start and text[run - 1] == "\\":
            run -= 1
        backslashes = close - run
        if backslashes & inner != inner:
            return close - min(backslashes, escapes)
        position = close + 1
    return limit


def _mask_jwts(text: str) -> str:
    """``text`` with each JWT masked, in time linear in its length."""
    parts: list[str] = []
    done = position = 0
    while (header := _JWT_HEADER.search(text, position)) is not None:
        # Any later ``eyJ`` in this run ends where this header does: not a JWT either.
        position = header.end()
        rest = _JWT_REST.match(text, position)
        if rest is None:
            continue
        parts.append(text[done : header.start()])
        parts.append(REDACTED)
        done = position = rest.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _mask_basic(match: re.Match[str]) -> str:
    # ``Basic dXNlcjpwYXNz`` is ``user:pass``; ``basic plan`` decodes to noise.
    try:
        decoded = base64.b64decode(match.group(2), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return match.group(0)
    if ":" in decoded and decoded.isprintable():
        return f"{match.group(1)} {REDACTED}"
    return match.group(0)


def _masked(value: str) -> str:
    """A header or field value masked, keeping an authorization scheme readable."""
    scheme = _SCHEME.match(value)
    if scheme is not None:
        return f"{scheme.group(1)} {REDACTED}"
    return REDACTED


class Redactor:
    """A structlog processor that masks secrets in the event dict.

    Values under secret keys are replaced with ``[REDACTED]`` in dicts, lists
    and ``(name, value)`` pairs at any depth (nested containers are copied,
    never mutated). Every string is scrubbed of bearer and basic credentials,
    JWTs, URL passwords and ``key=value`` / ``key: value`` pairs whose key is
    secret (header lines such as ``Authorization: Digest ...`` and
    ``Cookie: a=1; b=2`` to the end of the line), multipart form fields with
    a secret name and the ``input_value`` of pydantic validation errors for a
    secret field.
    """

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> None:
        if isinstance(keys, str):
            raise TypeError("redact must be an iterable of key names, not a single str")
        self._names = _Names(keys)
        self._key_cache: dict[object, bool] = {}
        # Two generations: when the young one fills up it becomes the old one,
        # so strings that repeat survive while one-off values (ids) churn.
        self._clean: set[str] = set()
        self._clean_old: set[str] = set()
        self._clean_chars = 0  # in the young generation
        # Cheap substring checks decide whether the (slow) pair search runs at all.
        self._stems = self._names.stems

    def is_secret_key(self, key: object) -> bool:
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        if isinstance(key, str):
            text = key
        elif isinstance(key, bytes):
            text = key.decode("latin-1")
        else:
            text = _safe_str(key)  # a key whose repr raises must not cost the line
        secret = self._names.secret(key_words(text))
        if len(self._key_cache) >= _KEY_CACHE_SIZE:
            self._key_cache.clear()
        self._key_cache[key] = secret
        return secret

    def scrub(self, text: str) -> str:
        """``text`` with tokens, credentials, URL passwords and ``secret=value`` pairs masked."""
        if "eyJ" in text:
            text = _mask_jwts(text)
        if "earer" in text or "EARER" in text:
            text = _BEARER.sub(r"\1 " + REDACTED, text)
        if "asic" in text or "ASIC" in text:
            text = _BASIC.sub(_mask_basic, text)
        if "://" in text and "@" in text:
            text = _mask_urls(text)
        if "</" in text and self._stems:
            text = _ELEMENT.sub(self._mask_element, text)
        if (
            "=" in text
            or ":" in text
            or "'," in text
            or '",' in text
            or "%3" in text
            or "--" in text
        ) and self._stems:
            lowered = text.lower()
            for stem in self._stems:
                if stem in lowered:
                    return self._mask_fields(text, lowered)
        return text

    def _qualified_secret(self, text: str, named: int, key: str) -> bool:
        # ``API Key: ...``, ``Session ID = ...``: a key that names a secret only
        # with the word before it. Other keys keep their own reading, so the
        # value after ``password user=`` or ``<token a="1">`` stays readable.
        if key_words(key)[-1:] not in _QUALIFIED_NOUNS:
            return False
        before = _WORD_BEFORE.search(text, max(0, named - 64), named)
        return before is not None and self.is_secret_key(f"{before.group(1)} {key}")

    def _mask_element(self, element: re.Match[str]) -> str:
        if not self.is_secret_key(element.group(1)):
            return element.group(0)
        start, end = element.span(2)
        whole = element.string
        return (
            whole[element.start() : start] + _masked(whole[start:end]) + whole[end : element.end()]
        )

    def _mask_fields(self, text: str, lowered: str) -> str:
        """``text`` with the value of each field, form part or pair naming a secret masked."""
        if "form-data" in lowered:
            text = self._mask_form_parts(text)
        if "input_value=" in text:
            text = self._mask_validation_inputs(text)
        if "'," in text or '",' in text:
            text = self._mask_tuple_pairs(text)
        if "--" in text:
            text = self._mask_flags(text)
        return self._mask_pairs(text)

    def _mask_flags(self, text: str) -> str:
        """``text`` with the value after each ``--secret-name`` flag masked."""
        parts: list[str] = []
        done = 0
        position = 0
        while (flag := _FLAG.search(text, position)) is not None:
            position = flag.end()
            if not self.is_secret_key(flag.group(1)):
                continue
            value = _FLAG_VALUE.match(text, position)
            if value is None:  # pragma: no cover - the lookahead promises a character
                continue
            start, end = value.span()
            inner_start, inner_end = start, end
            if text[start] in "\"'":  # mask inside the quotes, keep them
                inner_start += 1
                if end - start > 1 and text[end - 1] == text[start]:
                    inner_end -= 1
            parts.append(text[done:inner_start])
            parts.append(_masked(text[inner_start:inner_end]))
            done = inner_end
            position = end
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def _mask_form_parts(self, text: str) -> str:
        """``text`` with the value of each multipart/form-data field whose name is secret masked.

        A value runs from the blank line after its part's headers to the line
        starting the next part (``--boundary``), or to the end of a truncated body.
        """
        parts: list[str] = []
        done = position = 0
        while (field := _FORM_FIELD.search(text, position)) is not None:
            position = field.end()
            if not self.is_secret_key(field.group(1)):
                continue
            blank = _FORM_VALUE_START.search(text, position)
            if blank is None:
                break
            start = blank.end()
            next_part = _FORM_VALUE_END.search(text, start)
            end = next_part.start() if next_part is not None else len(text)
            if end > start:
                parts.append(text[done:start])
                parts.append(REDACTED)
                done = end
            position = max(end, position)
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def _mask_validation_inputs(self, text: str) -> str:
        """``text`` with the ``input_value`` of each ValidationError entry for a secret field."""
        parts: list[str] = []
        done = position = 0
        while (entry := _VALIDATION_INPUT.search(text, position)) is not None:
            start = entry.end()
            line = _LINE_END.search(text, start)
            line_end = line.start() if line is not None else len(text)
            position = line_end
            if not self.is_secret_key(entry.group(1).strip()):
                continue
            end = text.rfind(_VALIDATION_INPUT_END, start, line_end)
            parts.append(text[done:start])
            parts.append(REDACTED)
            done = end if end >= 0 else line_end
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def _mask_tuple_pairs(self, text: str) -> str:
        """``text`` with the value of each printed ``(name, value)`` pair naming a secret masked."""
        parts: list[str] = []
        done = position = 0
        line_end = -1
        while (pair := _TUPLE_PAIR.search(text, position)) is not None:
            position = pair.end()
            if not self.is_secret_key(pair.group(2)):
                continue
            if line_end < position:
                line = _LINE_END.search(text, position)
                line_end = line.start() if line is not None else len(text)
            close = _closing_quote(text, position, line_end, pair.group(3), 0)
            parts.append(text[done:position])
            parts.append(_masked(text[position:close]))
            done = position = close
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def _mask_pairs(self, text: str) -> str:
        """``text`` with the value of each ``key=value`` / ``key: value`` naming a secret masked."""
        parts: list[str] = []
        done = 0  # text[:done] is in parts
        position = 0
        # Found once per line, not per pair: a long line of pairs stays linear.
        line_end = -1
        while (pair := _PAIR_KEY.search(text, position)) is not None:
            key = pair.group(1)
            if not self.is_secret_key(key) and not self._qualified_secret(text, pair.start(1), key):
                position = pair.end(1)  # the value may itself be a pair: a=password=x
                continue
            start = pair.end()
            escapes = _BACKSLASHES.match(text, start).end() - start  # type: ignore[union-attr]
            quote = text[start + escapes : start + escapes + 1]
            if quote in ('"', "'"):
                opened = start + escapes + 1
                if line_end < opened:
                    line = _LINE_END.search(text, opened)
                    line_end = line.start() if line is not None else len(text)
                close = _closing_quote(text, opened, line_end, quote, escapes)
                parts.append(text[done:opened])
                parts.append(_masked(text[opened:close]))
                done = position = close
                continue
            if _SCHEME.match(text, start) is not None or key_words(key)[-1:] in _LINE_VALUED:
                line = _LINE_END.search(text, start)
                end = line.start() if line is not None else len(text)
            else:
                value = _ENCODED_VALUE if "%" in pair.group(2) else _PLAIN_VALUE
                plain = value.match(text, start)
                end = plain.end() if plain is not None else start
            if end > start:
                parts.append(text[done:start])
                parts.append(_masked(text[start:end]))
                done = end
            position = max(end, pair.end())
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

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
        # line, and so do long strings (an SQL statement echoed on every
        # query); remembering that they are clean skips the scan.
        size = len(text)
        if size > _MAX_REMEMBERED_LENGTH:
            return
        if len(self._clean) >= _CLEAN_CACHE_SIZE or self._clean_chars + size > _CLEAN_CACHE_CHARS:
            self._clean_old = self._clean
            self._clean = set()
            self._clean_chars = 0
        self._clean.add(text)
        self._clean_chars += size

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
