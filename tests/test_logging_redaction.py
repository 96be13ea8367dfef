"""Secrets never reach a log line, and no input breaks a line or raises."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import logging
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import make_url

from heygen_conventions import get_logger
from heygen_conventions._redact import DEFAULT_REDACTED_KEYS, REDACTED, Redactor
from tests.fixtures.logging import LogOutput

SECRET = "s3cr3t-value-7f2a"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize("key", sorted(DEFAULT_REDACTED_KEYS))
def test_every_listed_key_is_masked_at_any_depth_and_in_any_case(
    log_output: LogOutput, key: str
) -> None:
    shouted = key.upper().replace("_", "-")
    get_logger("r").info(
        "structlog",
        **{key: SECRET},
        nested={"level1": {shouted: SECRET}},
        items=[{"ok": 1, key.title(): SECRET}],
        pairs=[(key, SECRET)],
    )
    logging.getLogger("r").info("stdlib", extra={key: SECRET, "nested": {shouted: [SECRET]}})
    assert SECRET not in log_output.text
    line = log_output.one(event="structlog")
    assert line[key] == REDACTED
    assert line["nested"] == {"level1": {shouted: REDACTED}}
    assert line["items"] == [{"ok": 1, key.title(): REDACTED}]
    assert line["pairs"] == [[key, REDACTED]]
    stdlib = log_output.one(event="stdlib")
    assert stdlib[key] == REDACTED
    assert stdlib["nested"] == {shouted: REDACTED}


def test_keys_ending_in_a_secret_name_are_masked_and_look_alikes_are_not(
    log_output: LogOutput,
) -> None:
    get_logger("r").info(
        "fields",
        db_password=SECRET,
        x_api_key=SECRET,
        github_token=SECRET,
        author="Ada",
        tokens_used=12,
        secretary="Bob",
        keyboard="qwerty",
    )
    line = log_output.one(event="fields")
    assert line["db_password"] == line["x_api_key"] == line["github_token"] == REDACTED
    assert (line["author"], line["tokens_used"], line["secretary"], line["keyboard"]) == (
        "Ada",
        12,
        "Bob",
        "qwerty",
    )


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (f"calling upstream with Authorization: Bearer {SECRET}", "calling upstream with"),
        (f"got token {JWT} from the client", "from the client"),
        (f"connecting to postgresql://app:{SECRET}@db:5432/videos", "postgresql://app:"),
        (f"retrying with password={SECRET} and user=bob", "user=bob"),
        (f'payload {{"api_key": "{SECRET}", "n": 1}}', '"n": 1'),
        (f"GET /callback?code=1&access_token={SECRET}&state=x", "&state=x"),
        (f"Cookie: session={SECRET}; theme=dark", "Cookie:"),
    ],
)
def test_secrets_inside_free_text_are_masked(
    log_output: LogOutput, message: str, kept: str
) -> None:
    get_logger("r").info(message)
    logging.getLogger("r").warning("stdlib: %s", message)
    assert SECRET not in log_output.text
    assert JWT not in log_output.text
    for line in log_output.lines():
        assert REDACTED in line["event"]
        assert kept in line["event"]


def test_text_without_secrets_is_left_alone(log_output: LogOutput) -> None:
    plain = "cache key: videos:1 at http://example.com/a?b=c took 3ms; basic plan"
    get_logger("r").info(plain, note=plain)
    line = log_output.one(event=plain)
    assert line["note"] == plain


def test_exceptions_are_structured_scrubbed_and_never_show_frame_locals(
    log_output: LogOutput,
) -> None:
    def fail(password: str) -> None:
        local_secret = password  # a frame local that must never be rendered
        raise RuntimeError(f"upstream refused Bearer {local_secret}")

    try:
        fail(SECRET)
    except RuntimeError:
        get_logger("r").exception("structlog failure")
        logging.getLogger("r").exception("stdlib failure")
    assert SECRET not in log_output.text
    assert "local_secret" not in log_output.text
    for event in ("structlog failure", "stdlib failure"):
        line = log_output.one(event=event)
        assert line["level"] == "error"
        (stack,) = line["exception"]
        assert stack["exc_type"] == "RuntimeError"
        assert stack["exc_value"] == f"upstream refused Bearer {REDACTED}"
        assert [frame["name"] for frame in stack["frames"]][-1] == "fail"
        assert all("locals" not in frame or frame["locals"] is None for frame in stack["frames"])


def test_models_and_dataclasses_are_masked_field_by_field(log_output: LogOutput) -> None:
    class Login(BaseModel):
        email: str
        password: str

    @dataclasses.dataclass
    class Credentials:
        client_id: str
        client_secret: str

    get_logger("r").info(
        "objects",
        login=Login(email="a@b.c", password=SECRET),
        oauth_client=Credentials(client_id="c1", client_secret=SECRET),
    )
    line = log_output.one(event="objects")
    assert line["login"] == {"email": "a@b.c", "password": REDACTED}
    assert line["oauth_client"] == {"client_id": "c1", "client_secret": REDACTED}


def test_asgi_header_pairs_are_masked(log_output: LogOutput) -> None:
    headers = [(b"authorization", b"Bearer " + SECRET.encode()), (b"accept", b"*/*")]
    get_logger("r").info("raw headers", headers=headers)
    line = log_output.one(event="raw headers")
    assert line["headers"] == [["authorization", REDACTED], ["accept", "*/*"]]


def test_header_pairs_printed_into_text_are_masked(log_output: LogOutput) -> None:
    raw = [
        (b"host", b"api"),
        (b"cookie", b"sid=" + SECRET.encode()),
        (b"x-api-key", SECRET.encode()),
        (b"authorization", b"Token " + SECRET.encode()),
    ]
    logging.getLogger("r").info("request headers %s", raw)
    get_logger("r").info(f"pairs {[(k.decode(), v.decode()) for k, v in raw]}")
    try:
        raise ValueError(f"rejected {raw}")
    except ValueError:
        get_logger("r").exception("failed")
    assert SECRET not in log_output.text
    stdlib, structlog_line, failure = log_output.lines()
    assert stdlib["event"] == (
        "request headers [(b'host', b'api'), (b'cookie', b'[REDACTED]'), "
        "(b'x-api-key', b'[REDACTED]'), (b'authorization', b'Token [REDACTED]')]"
    )
    assert "('host', 'api'), ('cookie', '[REDACTED]')" in structlog_line["event"]
    assert "(b'x-api-key', b'[REDACTED]')" in failure["exception"][0]["exc_value"]


def test_the_callers_data_is_not_mutated(log_output: LogOutput) -> None:
    headers = {"authorization": f"Bearer {SECRET}", "accept": "*/*"}
    nested = [{"token": SECRET}]
    get_logger("r").info("request", headers=headers, nested=nested)
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert nested == [{"token": SECRET}]
    assert log_output.one(event="request")["headers"]["authorization"] == REDACTED


def test_redacted_keys_can_be_extended(log_output: LogOutput) -> None:
    log_output.configure(redact=[*DEFAULT_REDACTED_KEYS, "ssn"])
    get_logger("r").info("customer", ssn="123-45-6789", password=SECRET, name="Ada")
    line = log_output.one(event="customer")
    assert (line["ssn"], line["password"], line["name"]) == (REDACTED, REDACTED, "Ada")


def test_a_single_string_is_not_mistaken_for_a_list_of_keys() -> None:
    with pytest.raises(TypeError, match="iterable of key names"):
        Redactor("password")


class Shade(enum.StrEnum):
    DARK = "dark"


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Cycle(list[Any]):
    pass


def test_unserialisable_values_never_raise_and_never_break_a_line(log_output: LogOutput) -> None:
    cycle = Cycle()
    cycle.append(cycle)
    deep: Any = "bottom"
    for _ in range(2000):
        deep = [deep]
    values = {
        "obj": object(),
        "raw": b"\xff\xfe\x00 bytes",
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 1, 2),
        "id": uuid.UUID(int=7),
        "amount": Decimal("12.50"),
        "tags": {"a"},
        "unprintable": Unprintable(),
        "surrogate": "half \ud800 pair",
        "huge": 2**100,
        "int_keys": {1: "one", (2, 3): "tuple key"},
        "cycle": cycle,
        "deep": deep,
        "error": ValueError("bad"),
        "level_enum": Shade.DARK,
    }
    get_logger("r").info("odd values", **values)
    logging.getLogger("r").info("stdlib odd values", extra=values)
    for event in ("odd values", "stdlib odd values"):
        line = log_output.one(event=event)
        assert line["id"] == str(uuid.UUID(int=7))
        assert line["amount"] == "12.50"
        assert line["when"] == "2024-01-02T03:04:05+00:00"
        assert line["huge"] == str(2**100)
        assert line["tags"] == ["a"]
        assert line["error"] == "ValueError: bad"
        assert line["unprintable"] == "<unrepresentable Unprintable>"
        assert line["raw"].startswith("\\xff\\xfe")
        assert line["level_enum"] == "dark"


def test_unserialisable_values_keep_the_line_in_console_mode(log_output: LogOutput) -> None:
    log_output.configure(json=False)
    get_logger("r").info(
        "structlog console values", unprintable=Unprintable(), nested=[Unprintable()]
    )
    logging.getLogger("r").info("stdlib odd console values", extra={"unprintable": Unprintable()})
    get_logger("r").info(Unprintable())
    text = log_output.text
    assert "Log call failed" not in text, text
    for event in ("structlog console values", "stdlib odd console values"):
        (line,) = [line for line in text.splitlines() if f" {event} " in line]
        assert "<unrepresentable Unprintable>" in line
    assert "<unrepresentable list>" in text
    assert len(text.splitlines()) == 3, text


def test_mismatched_format_arguments_keep_the_line(log_output: LogOutput) -> None:
    get_logger("r").info("%s and %s", "one")
    get_logger("r").info("%(name)s", {"other": 1})
    get_logger("r").info("hello %s", "world")
    get_logger("r").info("hi %(name)s", {"name": "Ada"})
    assert log_output.one(event="%s and %s")["positional_args"] == ["one"]
    assert log_output.find(event="%(name)s")
    assert log_output.find(event="hello world")
    assert log_output.find(event="hi Ada")


def test_a_failing_log_call_writes_a_json_line_instead_of_raising(
    log_output: LogOutput, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(logger: Any, method_name: str, event_dict: Any) -> Any:
        if event_dict.get("explode"):
            raise RuntimeError("processor bug")
        return event_dict

    log_output.configure(processors=[broken])
    get_logger("r").info(f"with Bearer {SECRET}", explode=True)
    logging.getLogger("r").error("stdlib", extra={"explode": True})
    # Sent to our handler alone: pytest's own capture handler would raise on it.
    bad_format = logging.makeLogRecord(
        {"name": "r", "levelno": 40, "levelname": "ERROR", "msg": "%d", "args": ("x",)}
    )
    (handler,) = [h for h in logging.getLogger().handlers if hasattr(h, "pipeline")]
    handler.handle(bad_format)
    failures = log_output.find(event="Log call failed")
    assert len(failures) == 3, log_output.text
    assert {f["failed_logger"] for f in failures} == {"r"}
    assert {f["error_type"] for f in failures} == {"RuntimeError", "TypeError"}
    assert SECRET not in log_output.text
    # The standard library's "--- Logging error ---" report never appears.
    assert "Logging error" not in capsys.readouterr().err


def test_log_method_accepts_any_level_number(log_output: LogOutput) -> None:
    log = get_logger("r")
    log.log(logging.WARNING, "warned %s", "here")
    log.log(25, "between info and warning")
    log.log(5, "below debug")
    assert log_output.one(event="warned here")["level"] == "warning"
    assert log_output.one(event="between info and warning")["level"] == "info"
    assert not log_output.find(event="below debug")


def test_strings_seen_often_stay_cheap_and_secrets_stay_masked() -> None:
    redactor = Redactor()
    for n in range(10_000):  # far more one-off strings than the clean-string cache holds
        event = redactor(None, "info", {"event": "tick", "request_id": f"id-{n}"})
        assert event == {"event": "tick", "request_id": f"id-{n}"}
    masked = redactor(None, "info", {"event": f"Bearer {SECRET}", "note": "tick"})
    assert masked == {"event": f"Bearer {REDACTED}", "note": "tick"}


def test_long_clean_strings_are_scanned_once_and_the_cache_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An SQL statement echoed on every query is hundreds of characters long.
    redactor = Redactor()
    scans: list[str] = []
    scrub = redactor.scrub

    def counting(text: str) -> str:
        scans.append(text)
        return scrub(text)

    monkeypatch.setattr(redactor, "scrub", counting)
    statement = "SELECT videos.id, videos.title FROM videos WHERE videos.status = $1 " * 8
    for _ in range(3):
        assert redactor(None, "info", {"sql": statement}) == {"sql": statement}
    assert scans.count(statement) == 1
    secret = statement + f"AND password = {SECRET}"
    for _ in range(2):  # what is not clean is never remembered: scanned and masked each time
        assert redactor(None, "info", {"sql": secret})["sql"].endswith(f"password = {REDACTED}")
    assert scans.count(secret) == 2
    # One-off long strings: the two generations never hold much more than 2 MiB of text.
    for n in range(400):
        text = f"{n:06d}" + "x" * 20_000
        assert redactor(None, "info", {"blob": text}) == {"blob": text}
        held = sum(map(len, redactor._clean)) + sum(map(len, redactor._clean_old))
        assert held <= 2 * 1024 * 1024
    huge = "y" * 70_000  # longer than any string remembered
    for _ in range(2):
        redactor(None, "info", {"blob": huge})
    assert scans.count(huge) == 2


# Spellings of secret keys seen in the wild: camelCase (JavaScript clients,
# OAuth responses), header names, one-piece names, plurals, related fields.
SECRET_SPELLINGS = [
    "accessToken",
    "refreshToken",
    "authToken",
    "idToken",
    "apiKey",
    "APIKEY",
    "clientSecret",
    "X-Auth-Token",
    "XAuthToken",
    "x_api_key",
    "password_hash",
    "passwordHash",
    "password2",
    "db.password",
    "pwd",
    "passphrase",
    "credential",
    "credentials",
    "private_key",
    "privateKey",
    "session",
    "session_id",
    "sessionId",
    "sessionid",
    "PHPSESSID",
    "JSESSIONID",
    "csrf_token",
    "csrftoken",
    "csrfmiddlewaretoken",
    "X-CSRF-Token",
    "xsrf",
    "_xsrf",
    "XSRF-TOKEN",
    "otp",
    "access_tokens",
    "token_value",
    "authorization_code",
    "aws_secret_access_key",
    "HTTP_AUTHORIZATION",
    "Set-Cookie",
]

# Keys that name something about a secret, or only look like one: readable.
READABLE_KEYS = [
    "token_type",
    "tokenType",
    "expires_in",
    "access_token_expires_in",
    "token_expires_at",
    "tokens_used",
    "tokens_count",
    "max_tokens",
    "input_tokens",
    "total_tokens",
    "tokenizer",
    "author",
    "secretary",
    "secret_name",
    "passwordless",
    "password_policy",
    "status_code",
    "keyboard",
    "cache_key",
    "primary_key",
    "public_key",
    "private_key_path",
    "cookie_name",
    "cookie_max_age",
    "session_duration_ms",
    "authorization_url",
    "jwt_algorithm",
    "user_id",
    "request_id",
    "api_version",
    "api",
]


@pytest.mark.parametrize("key", SECRET_SPELLINGS)
def test_other_spellings_of_secret_keys_are_masked_in_both_paths(
    log_output: LogOutput, key: str
) -> None:
    get_logger("r").info(
        "structlog", **{key: SECRET}, nested={"level1": {key: SECRET}}, items=[{key: SECRET}]
    )
    logging.getLogger("r").info("stdlib", extra={key: SECRET, "nested": {key: [SECRET]}})
    assert SECRET not in log_output.text
    line = log_output.one(event="structlog")
    assert line[key] == REDACTED
    assert line["nested"] == {"level1": {key: REDACTED}}
    assert line["items"] == [{key: REDACTED}]
    stdlib = log_output.one(event="stdlib")
    assert stdlib[key] == REDACTED
    assert stdlib["nested"] == {key: REDACTED}


@pytest.mark.parametrize("key", READABLE_KEYS)
def test_keys_describing_or_resembling_secrets_stay_readable_in_both_paths(
    log_output: LogOutput, key: str
) -> None:
    get_logger("r").info("structlog", **{key: "plain-value"}, nested={"level1": {key: 3600}})
    logging.getLogger("r").info("stdlib", extra={key: "plain-value", "nested": {key: 3600}})
    for event in ("structlog", "stdlib"):
        line = log_output.one(event=event)
        assert line[key] == "plain-value"
    assert log_output.one(event="structlog")["nested"] == {"level1": {key: 3600}}
    assert log_output.one(event="stdlib")["nested"] == {key: 3600}
    get_logger("r").info(f"{key}=plain-value")
    assert log_output.one(event=f"{key}=plain-value")


def test_secret_key_decisions_follow_the_configured_names() -> None:
    redactor = Redactor(["ssn", "pin_code"])
    assert redactor.is_secret_key("customerSSN")
    assert redactor.is_secret_key("ssn_last4")
    assert redactor.is_secret_key("PinCode")
    assert redactor.is_secret_key("card_pincode")
    assert not redactor.is_secret_key("ssn_type")
    assert not redactor.is_secret_key("password")  # the defaults were replaced
    assert not redactor.is_secret_key("_")
    assert not redactor.is_secret_key("")
    assert Redactor([" ", ""]).scrub("password=x") == "password=x"


BASIC = "dXNlcjpzM2NyM3QtdmFsdWUtN2YyYQ=="  # user:s3cr3t-value-7f2a
GITHUB_PAT = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        (f"raw header Authorization: Basic {BASIC}", "raw header Authorization: Basic [REDACTED]"),
        (
            f'Authorization: Digest username="bob", nonce="n1", response="{SECRET}"',
            "Authorization: Digest [REDACTED]",
        ),
        (f"Authorization: Token {SECRET}", "Authorization: Token [REDACTED]"),
        (f"Authorization: ApiKey {SECRET}", "Authorization: ApiKey [REDACTED]"),
        (f"authorization={SECRET}", "authorization=[REDACTED]"),
        (f"Proxy-Authorization: Basic {BASIC}", "Proxy-Authorization: Basic [REDACTED]"),
        (
            f"headers {{'Authorization': 'Basic {BASIC}', 'Accept': '*/*'}}",
            "headers {'Authorization': 'Basic [REDACTED]', 'Accept': '*/*'}",
        ),
        (f"Cookie: theme=dark; session={SECRET}", "Cookie: [REDACTED]"),
        (
            f"Set-Cookie: session={SECRET}; Path=/; HttpOnly\nnext line",
            "Set-Cookie: [REDACTED]\nnext line",
        ),
        (
            f'{{"Set-Cookie": "sid={SECRET}; Path=/", "n": 1}}',
            '{"Set-Cookie": "[REDACTED]", "n": 1}',
        ),
        (
            f"retrying with Basic {BASIC} against upstream",
            "retrying with Basic [REDACTED] against upstream",
        ),
        (
            f"connecting to redis://:{SECRET}@cache:6379/0",
            "connecting to redis://:[REDACTED]@cache:6379/0",
        ),
        (f"rediss://default:{SECRET}@cache:6380/1", "rediss://default:[REDACTED]@cache:6380/1"),
        (f"amqp://guest:{SECRET}@rabbit:5672//", "amqp://guest:[REDACTED]@rabbit:5672//"),
        (
            f"postgresql+asyncpg://user:{SECRET}@db:5432/app",
            "postgresql+asyncpg://user:[REDACTED]@db:5432/app",
        ),
        (f"postgresql://app:p@ss{SECRET}@db/app", "postgresql://app:[REDACTED]@db/app"),
        (
            f"postgresql://app:{SECRET}@db/app failed; mail ops@example.com",
            "postgresql://app:[REDACTED]@db/app failed; mail ops@example.com",
        ),
        (
            f"from http://proxy:3128 to postgresql://app:{SECRET}@db/app",
            "from http://proxy:3128 to postgresql://app:[REDACTED]@db/app",
        ),
        (
            f"cloning https://{GITHUB_PAT}@github.com/o/r",
            "cloning https://[REDACTED]@github.com/o/r",
        ),
        (
            f"cloning https://{GITHUB_PAT}:x-oauth-basic@github.com/o/r",
            "cloning https://[REDACTED]:[REDACTED]@github.com/o/r",
        ),
        (f"accessToken={SECRET}&user=bob", "accessToken=[REDACTED]&user=bob"),
        (f"password_hash: {SECRET} for bob", "password_hash: [REDACTED] for bob"),
        (f"X-Auth-Token: {SECRET}", "X-Auth-Token: [REDACTED]"),
        (
            f"started with --db-password={SECRET} --port=1",
            "started with --db-password=[REDACTED] --port=1",
        ),
        (f"password: '{SECRET} with spaces' ok", "password: '[REDACTED]' ok"),
        (f"x=password={SECRET}", "x=password=[REDACTED]"),
        (f'unterminated password: "{SECRET}', 'unterminated password: "[REDACTED]'),
        (f'password="{SECRET}\nuser="bob"', 'password="[REDACTED]\nuser="bob"'),
    ],
)
def test_credentials_in_header_lines_and_urls_are_masked_and_the_rest_kept(
    log_output: LogOutput, message: str, logged: str
) -> None:
    get_logger("r").info(message, note=message)
    logging.getLogger("r").warning("%s", message, extra={"detail": [message]})
    assert SECRET not in log_output.text
    assert BASIC not in log_output.text
    assert GITHUB_PAT not in log_output.text
    structlog_line, stdlib_line = log_output.lines()
    assert structlog_line["event"] == structlog_line["note"] == logged
    assert stdlib_line["event"] == logged
    assert stdlib_line["detail"] == [logged]


@pytest.mark.parametrize(
    "text",
    [
        "token_type=bearer expires_in=3600",
        "ssh://git@github.com/org/repo.git",
        "postgresql://postgres@127.0.0.1:5432/test",
        "a basic plan, Basic tier",
        "mailto:ada@example.com",
        "Digest of the week: ready",
        "max_tokens=4096 tokens_used: 12",
        "basic AAAA (no user:password inside)",
        "password=; nothing to mask",
        "see https://example.com/a@b for details",
        "mail ann@example.com via https://example.com/contact",
        "redis://cache:6379/0 is down, paging ops@example.com",
        "GET https://api.example.com:443/v1 for ann@example.com",
        "https://example.com: ask ann@example.com",
    ],
)
def test_text_that_only_resembles_credentials_is_kept(log_output: LogOutput, text: str) -> None:
    get_logger("r").info(text)
    logging.getLogger("r").info(text)
    assert [line["event"] for line in log_output.lines()] == [text, text]


def test_scrubbing_hostile_text_stays_linear() -> None:
    redactor = Redactor()
    dashes = "a-" * 50_000 + "token"
    dots = "redis://" + "a." * 50_000 + "@"
    colons = "a://b:" * 50_000 + "@"
    assert redactor.scrub(dashes) == dashes
    assert redactor.scrub(dots) == dots
    assert redactor.scrub(colons).count(REDACTED) == 1
    assert redactor.scrub("token: " * 10_000).count(REDACTED) == 5_000
    assert redactor.scrub('"password": "x" ' * 20_000).count(REDACTED) == 20_000
    assert redactor.scrub('password: "' + '\\"' * 50_000) == f'password: "{REDACTED}'
    form = "Content-Disposition: form-data; name=password\n\nx\n--b\n" * 10_000
    assert redactor.scrub(form).count(REDACTED) == 10_000
    errors = "password\n  bad [type=x, input_value='x', input_type=str]\n" * 10_000
    assert redactor.scrub(errors).count(REDACTED) == 10_000
    pairs = "('cookie', 'x'), " * 20_000
    assert redactor.scrub(pairs).count(REDACTED) == 20_000
    assert redactor.scrub("('cookie', '" + "\\'" * 50_000) == f"('cookie', '{REDACTED}"
    encoded = "a%26token%3Dx" * 20_000
    assert redactor.scrub(encoded).count(REDACTED) == 20_000
    flags = "--token x " * 20_000
    assert redactor.scrub(flags).count(REDACTED) == 20_000
    qualified = "API Key: x " * 20_000
    assert redactor.scrub(qualified).count(REDACTED) == 20_000
    elements = "<password>x</password><a " * 20_000
    assert redactor.scrub(elements).count(REDACTED) == 20_000
    assert redactor.scrub("<a>" * 50_000 + "</a") == "<a>" * 50_000 + "</a"
    assert redactor.scrub("--" * 50_000 + "token") == "--" * 50_000 + "token"


@pytest.mark.parametrize(
    "password", ["k3J/9xQ+Zt", "Tr0ub4dor?x", "hunter#22x", "s3cr3t p4ss", "it's\"<ok>"]
)
def test_url_passwords_are_masked_whatever_they_hold_as_sqlalchemy_reads_them(
    log_output: LogOutput, password: str
) -> None:
    url = f"postgresql+asyncpg://app:{password}@db.internal:5432/app"
    assert make_url(url).password == password  # a URL SQLAlchemy connects with
    expected = make_url(url).render_as_string(hide_password=True).replace("***", REDACTED)
    get_logger("r").info(f"connecting to {url}", url=url)
    logging.getLogger("r").warning("DB down: %s", url, extra={"detail": {"dsn": url}})
    assert password not in log_output.text
    structlog_line, stdlib_line = log_output.lines()
    assert structlog_line["event"] == f"connecting to {expected}"
    assert structlog_line["url"] == expected
    assert stdlib_line["event"] == f"DB down: {expected}"
    assert stdlib_line["detail"] == {"dsn": expected}


def multipart_body(fields: dict[str, str]) -> str:
    """A multipart/form-data body as httpx sends it (real boundary, CRLF lines)."""
    request = httpx.Request("POST", "http://api/login", data=fields, files={"avatar": b"PNG"})
    return request.read().decode()


FORM = multipart_body({"username": "ann", "password": f"{SECRET}\r\nsecond line"})


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        (
            json.dumps({"password": f'ab"{SECRET}', "n": 1}),
            '{"password": "[REDACTED]", "n": 1}',
        ),
        (
            json.dumps({"password": f"{SECRET}\\", "n": 1}),
            '{"password": "[REDACTED]", "n": 1}',
        ),
        (
            repr({"password": f'it\'s "{SECRET}"', "n": 1}),
            "{'password': '[REDACTED]', 'n': 1}",
        ),
        (
            json.dumps(json.dumps({"password": f'x"{SECRET}', "n": 1})),
            json.dumps(json.dumps({"password": REDACTED, "n": 1})),
        ),
        (
            json.dumps(json.dumps(json.dumps({"api_key": f'x"{SECRET}', "n": 1}))),
            json.dumps(json.dumps(json.dumps({"api_key": REDACTED, "n": 1}))),
        ),
        (
            f'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n{SECRET}\r\n--b--',
            '--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n[REDACTED]\r\n--b--',
        ),
        (
            repr(f'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n{SECRET}\r\n--b--'),
            repr('--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n[REDACTED]\r\n--b--'),
        ),
        (
            FORM,
            FORM.replace(f"{SECRET}\r\nsecond line", REDACTED),
        ),
        (
            "2 validation errors for Login\npassword\n  String should have at most 8 characters"
            f" [type=string_too_long, input_value='{SECRET}', input_type=str]\n"
            "    For further information visit https://errors.pydantic.dev/2/v/string_too_long\n"
            "email\n  Field required [type=missing, input_value='ann', input_type=str]",
            "2 validation errors for Login\npassword\n  String should have at most 8 characters"
            " [type=string_too_long, input_value=[REDACTED], input_type=str]\n"
            "    For further information visit https://errors.pydantic.dev/2/v/string_too_long\n"
            "email\n  Field required [type=missing, input_value='ann', input_type=str]",
        ),
    ],
)
def test_secret_fields_in_bodies_and_validation_errors_are_masked(
    log_output: LogOutput, message: str, logged: str
) -> None:
    get_logger("r").warning("upstream rejected request", body=message)
    logging.getLogger("r").warning("%s", message, extra={"detail": [message]})
    assert SECRET not in log_output.text
    structlog_line, stdlib_line = log_output.lines()
    assert structlog_line["body"] == logged
    assert stdlib_line["event"] == logged
    assert stdlib_line["detail"] == [logged]


def test_multipart_fields_that_are_not_secret_stay_readable(log_output: LogOutput) -> None:
    get_logger("r").info("form", body=FORM)
    body = log_output.one(event="form")["body"]
    assert 'name="username"\r\n\r\nann\r\n' in body
    assert 'name="password"\r\n\r\n[REDACTED]\r\n--' in body
    assert 'filename="upload"' in body
    assert "\r\n\r\nPNG\r\n" in body


def test_validation_errors_for_secret_fields_are_masked_in_exceptions(
    log_output: LogOutput,
) -> None:
    class Login(BaseModel):
        email: str
        password: str = Field(max_length=8)

    try:
        Login.model_validate({"email": ["not", "a", "string"], "password": SECRET})
    except ValidationError as exc:
        get_logger("r").exception("structlog failure", error=str(exc))
        logging.getLogger("r").exception("stdlib failure")
    assert SECRET not in log_output.text
    for event in ("structlog failure", "stdlib failure"):
        line = log_output.one(event=event)
        (stack,) = line["exception"]
        assert "input_value=[REDACTED], input_type=str]" in stack["exc_value"]
        assert "input_value=['not', 'a', 'string'], input_type=list]" in stack["exc_value"]
    assert "input_value=[REDACTED]" in log_output.one(event="structlog failure")["error"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # URL-encoded pairs: a logged query string or form body
        (
            "GET /login?next=%2F&password%3Dhunter2%26user%3Dbob",
            f"GET /login?next=%2F&password%3D{REDACTED}%26user%3Dbob",
        ),
        ("body user%3Dbob%26password%3Dhunter2", f"body user%3Dbob%26password%3D{REDACTED}"),
        # command lines: the value after a secret flag, quoted or not
        ("ran app --password hunter2 --user bob", f"ran app --password {REDACTED} --user bob"),
        ("ran app --api-key 'two words' -v", f"ran app --api-key '{REDACTED}' -v"),
        ('ran app --client-secret "s e" --x', f'ran app --client-secret "{REDACTED}" --x'),
        ("ran app --user bob --verbose", "ran app --user bob --verbose"),
        # keys of two words, the secret one needing the word before it
        ("config API Key: k-123, region: eu", f"config API Key: {REDACTED}, region: eu"),
        ("Session ID = 77 for User ID = 5", f"Session ID = {REDACTED} for User ID = 5"),
        ("Secret Key: k Primary Key: 9", f"Secret Key: {REDACTED} Primary Key: 9"),
        ("the cache key: videos:1", "the cache key: videos:1"),
        ("reset password user=bob", "reset password user=bob"),
        # XML or HTML elements named as secrets
        (
            "<login><user>bob</user><password>hunter2</password></login>",
            f"<login><user>bob</user><password>{REDACTED}</password></login>",
        ),
        (
            '<auth><ns:ApiKey type="x">k-1</ns:ApiKey><b>bold</b></auth>',
            f'<auth><ns:ApiKey type="x">{REDACTED}</ns:ApiKey><b>bold</b></auth>',
        ),
        (
            "<cacheKey>videos:1</cacheKey><token></token>",
            "<cacheKey>videos:1</cacheKey><token></token>",
        ),
    ],
)
def test_encoded_pairs_flags_two_word_keys_and_elements_are_masked(
    log_output: LogOutput, text: str, expected: str
) -> None:
    get_logger("r").info(text)
    logging.getLogger("r").info("%s", text)
    assert [line["event"] for line in log_output.lines()] == [expected, expected]


def scrub_seconds(redactor: Redactor, text: str) -> float:
    started = time.perf_counter()
    redactor.scrub(text)
    return time.perf_counter() - started


def test_scrubbing_many_jwt_starts_in_one_run_stays_linear() -> None:
    # Every ``-eyJ`` is a place a JWT could start; trying each against the rest
    # of the run is quadratic (160 kB: about 14 s). Hostile text stays linear.
    redactor = Redactor()
    hostile = "eyJ-" * 40_000
    assert scrub_seconds(redactor, hostile) < 1.0
    assert redactor.scrub(hostile) == hostile
    # Still masked where it is a token, also after a run of false starts.
    assert redactor.scrub(f"eyJ-eyJ-x {JWT} -{JWT}") == f"eyJ-eyJ-x {REDACTED} -{REDACTED}"


def test_scrubbing_many_form_data_headers_on_one_line_stays_linear() -> None:
    # Each ``content-disposition: form-data`` looking to the end of the line
    # for its ``name=`` is quadratic too (160 kB with a secret word: about 10 s).
    redactor = Redactor()
    hostile = "content-disposition: form-data " * 5_000 + "token"
    assert scrub_seconds(redactor, hostile) < 1.0
    assert redactor.scrub(hostile) == hostile
    form = (
        "Content-Disposition: form-data; x=1; "
        'content-disposition: form-data; name="password"\r\n\r\nhunter2\r\n--b'
    )
    assert redactor.scrub(form).endswith(f"\r\n\r\n{REDACTED}\r\n--b")
