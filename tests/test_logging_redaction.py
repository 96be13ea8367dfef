"""Secrets never reach a log line, and no input breaks a line or raises."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

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
        credentials=Credentials(client_id="c1", client_secret=SECRET),
    )
    line = log_output.one(event="objects")
    assert line["login"] == {"email": "a@b.c", "password": REDACTED}
    assert line["credentials"] == {"client_id": "c1", "client_secret": REDACTED}


def test_asgi_header_pairs_are_masked(log_output: LogOutput) -> None:
    headers = [(b"authorization", b"Bearer " + SECRET.encode()), (b"accept", b"*/*")]
    get_logger("r").info("raw headers", headers=headers)
    line = log_output.one(event="raw headers")
    assert line["headers"] == [["authorization", REDACTED], ["accept", "*/*"]]


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
