"""configure_logging: one JSON or console pipeline for structlog and standard-library lines."""

from __future__ import annotations

import contextlib
import enum
import gc
import io
import logging
import os
import re
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from heygen_conventions import (
    RequestContextMiddleware,
    Settings,
    bind_request_context,
    configure_logging,
    configure_logging_from_settings,
    get_logger,
)
from heygen_conventions._context import end_request_context, start_request_context
from heygen_conventions._log_pipeline import HANDLER_MARK, Output, iso_timestamp
from heygen_conventions._redact import REDACTED
from heygen_conventions.logging import _SINK, _snapshot
from tests.conftest import TEST_DATABASE_URL
from tests.fixtures.logging import LogOutput

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, HANDLER_MARK, False)]


def test_structlog_lines_are_json_with_level_logger_and_timestamp(log_output: LogOutput) -> None:
    get_logger("videos").info("video created", video_id="v1", size=3)
    line = log_output.one(event="video created")
    assert line["level"] == "info"
    assert line["logger"] == "videos"
    assert line["video_id"] == "v1"
    assert line["size"] == 3
    assert ISO_UTC.match(line["timestamp"]), line["timestamp"]


@pytest.mark.parametrize(
    "now",
    [
        0.0,
        1_764_215_519.000001,
        1_764_215_519.999999,
        1_764_215_520.5,
        1_764_215_520.9999995,
        -1.25,
    ],
)
def test_timestamps_are_the_instant_in_utc_to_the_microsecond(now: float) -> None:
    expected = datetime.fromtimestamp(now, UTC)
    stamp = iso_timestamp(now)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    # Truncated to the microsecond, where datetime rounds: at most one apart.
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((parsed - expected).total_seconds()) <= 1e-6
    assert iso_timestamp(now + 1) != stamp  # the cached second moves on
    assert iso_timestamp(now) == stamp


def test_get_logger_is_named_after_the_calling_module(log_output: LogOutput) -> None:
    get_logger().warning("named")
    assert log_output.one(event="named")["logger"] == __name__


def test_stdlib_records_share_the_pipeline_and_extra_fields_become_keys(
    log_output: LogOutput,
) -> None:
    logging.getLogger("heygen_conventions.errors").info(
        "Request failed: %s", "not_found", extra={"status_code": 404, "error_code": "not_found"}
    )
    line = log_output.one(event="Request failed: not_found")
    assert line["logger"] == "heygen_conventions.errors"
    assert line["level"] == "info"
    assert line["status_code"] == 404
    assert line["error_code"] == "not_found"
    assert ISO_UTC.match(line["timestamp"])
    assert "args" not in line
    assert "msg" not in line
    assert "exc_info" not in line


def test_extra_fields_keep_the_order_they_were_given_in(log_output: LogOutput) -> None:
    # As structlog's keyword arguments do: the same line from each worker
    # process has its keys in one order, not an order set by the hash seed.
    extra = {f"field_{name}": index for index, name in enumerate("zyxwvutsrqponmlkjihg")}
    logging.getLogger("ordered").info("ordered", extra=extra)
    line = log_output.one(event="ordered")
    assert [key for key in line if key.startswith("field_")] == list(extra)


def test_request_context_reaches_structlog_and_stdlib_lines(log_output: LogOutput) -> None:
    token = start_request_context(request_id="r-1", method="GET", path="/videos")
    try:
        bind_request_context(user_id="u-9")
        get_logger("app").info("from structlog")
        logging.getLogger("app").info("from stdlib")
    finally:
        end_request_context(token)
    get_logger("app").info("after the request")
    for event in ("from structlog", "from stdlib"):
        line = log_output.one(event=event)
        assert (line["request_id"], line["user_id"], line["path"]) == ("r-1", "u-9", "/videos")
    assert "request_id" not in log_output.one(event="after the request")


def test_structlog_contextvars_are_merged_too(log_output: LogOutput) -> None:
    with structlog.contextvars.bound_contextvars(job_id="j-1"):
        get_logger("worker").info("job step")
        logging.getLogger("worker").info("stdlib job step")
    assert log_output.one(event="job step")["job_id"] == "j-1"
    assert log_output.one(event="stdlib job step")["job_id"] == "j-1"


def test_a_field_logged_explicitly_wins_over_the_context(log_output: LogOutput) -> None:
    token = start_request_context(request_id="r-1")
    try:
        get_logger("app").info("override", request_id="explicit")
    finally:
        end_request_context(token)
    assert log_output.one(event="override")["request_id"] == "explicit"


def test_configuring_twice_keeps_one_handler_and_writes_each_line_once(
    log_output: LogOutput,
) -> None:
    log = get_logger("twice")
    log_output.configure(level="INFO")
    log_output.configure(level="INFO")
    assert len(our_handlers()) == 1
    log.info("structlog once")
    logging.getLogger("twice").info("stdlib once")
    assert len(log_output.find(event="structlog once")) == 1
    assert len(log_output.find(event="stdlib once")) == 1


def test_level_applies_to_both_paths_and_to_loggers_made_before(log_output: LogOutput) -> None:
    early = get_logger("early")  # made before the configuration below, as at import time
    log_output.configure(level="WARNING")
    early.info("dropped structlog")
    logging.getLogger("early").info("dropped stdlib")
    early.warning("kept structlog")
    logging.getLogger("early").warning("kept stdlib")
    assert [line["event"] for line in log_output.lines()] == ["kept structlog", "kept stdlib"]
    assert early.is_enabled_for(logging.WARNING)
    assert not early.is_enabled_for(logging.INFO)


def test_loggers_bound_before_the_configuration_follow_its_level(log_output: LogOutput) -> None:
    early = get_logger("early").bind(component="c")  # as at import time
    used = structlog.get_logger("raw")
    log_output.configure(level="WARNING")
    used.warning("first use caches the logger")
    log_output.configure(level="WARNING")
    early.info("dropped bound")
    used.info("dropped cached")
    log_output.configure(level="DEBUG")
    early.debug("kept bound")
    used.debug("kept cached")
    assert [line["event"] for line in log_output.lines()] == [
        "first use caches the logger",
        "kept bound",
        "kept cached",
    ]
    assert early.is_enabled_for(logging.DEBUG)


def test_a_bound_logger_keeps_its_context(log_output: LogOutput) -> None:
    log = get_logger("bound").bind(video_id="v1")
    log.info("first")
    log.bind(step=2).info("second")
    assert log_output.one(event="first")["video_id"] == "v1"
    assert log_output.one(event="second")["step"] == 2


def test_invalid_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level must be"):
        configure_logging(level="LOUD")
    with pytest.raises(ValueError, match="level must be"):
        configure_logging(level=25)


def test_uvicorn_loggers_are_routed_through_the_pipeline(log_output: LogOutput) -> None:
    # What uvicorn's default dictConfig leaves behind: own handlers, no propagation.
    elsewhere = io.StringIO()
    for name in ("uvicorn", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.addHandler(logging.StreamHandler(elsewhere))
        uvicorn_logger.propagate = False
    log_output.configure(level="INFO")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    assert log_output.one(event="Started server process [42]")["logger"] == "uvicorn.error"
    # Our middleware writes the access line; uvicorn's own is off unless asked for.
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert elsewhere.getvalue() == ""

    log_output.configure(level="INFO", uvicorn_access=True)
    access = logging.getLogger("uvicorn.access")
    assert access.hasHandlers()
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200)
    line = log_output.one(logger="uvicorn.access")
    assert line["event"] == '127.0.0.1:5000 - "GET / HTTP/1.1" 200'
    assert "color_message" not in line


DATABASE_URLS = [
    "sqlite+aiosqlite:///:memory:",
    *([TEST_DATABASE_URL] if TEST_DATABASE_URL else []),
]


@pytest.mark.parametrize("url", DATABASE_URLS)
async def test_sqlalchemy_statements_are_logged_through_the_pipeline(
    log_output: LogOutput, url: str
) -> None:
    log_output.configure(level="INFO")
    sql_logger = logging.getLogger("sqlalchemy.engine.Engine")
    sql_logger.setLevel(logging.INFO)
    engine = create_async_engine(url)
    try:
        token = start_request_context(request_id="r-sql")
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 42"))
        finally:
            end_request_context(token)
    finally:
        await engine.dispose()
        sql_logger.setLevel(logging.NOTSET)
    statements = log_output.find(event="SELECT 42")
    assert len(statements) == 1, log_output.text
    assert statements[0]["logger"] == "sqlalchemy.engine.Engine"
    assert statements[0]["request_id"] == "r-sql"


async def run_sqlite_statement_with(value: str) -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT :value"), {"value": value})
    finally:
        await engine.dispose()


async def test_debug_keeps_aiosqlite_statement_parameters_out(log_output: LogOutput) -> None:
    secret = "sk_live_aiosqlite_parameter"
    await run_sqlite_statement_with(secret)
    get_logger("app").debug("still at debug")
    assert log_output.one(event="still at debug")
    assert secret not in log_output.text
    # A later configuration at another level keeps holding it.
    log_output.configure(level="WARNING")
    log_output.configure(level="DEBUG")
    await run_sqlite_statement_with(secret)
    assert secret not in log_output.text


async def test_aiosqlite_debug_lines_appear_when_its_level_is_set(log_output: LogOutput) -> None:
    secret = "sk_live_aiosqlite_parameter"
    logging.getLogger("aiosqlite").setLevel(logging.DEBUG)
    log_output.configure(level="DEBUG")  # a level set by the user is kept
    await run_sqlite_statement_with(secret)
    assert any(
        line["logger"] == "aiosqlite" and secret in line["event"] for line in log_output.lines()
    ), log_output.text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_output_is_readable_and_escapes_control_characters() -> None:
    restore = _snapshot()
    stream = io.StringIO()
    try:
        configure_logging(json=False, stream=stream)
        get_logger("console").info("video created", video_id="v1", title="a\x1b[31mred\nline")
        try:
            raise ValueError("bad Bearer abc.def")
        except ValueError:
            get_logger("console").exception("failed")
    finally:
        restore()
    first, *rest = stream.getvalue().splitlines()
    assert "[info" in first
    assert "video created" in first
    assert "video_id=v1" in first
    assert "[console]" in first
    assert "\x1b" not in first
    assert r"a\x1b[31mred\x0aline" in first
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(first)
    traceback = "\n".join(rest)
    assert "[error" in traceback
    assert "Traceback (most recent call last)" in traceback
    assert "ValueError: bad Bearer [REDACTED]" in traceback
    assert "abc.def" not in traceback


def test_console_tracebacks_escape_control_characters_from_exception_messages() -> None:
    # An exception message quoting input must not move the cursor, erase or
    # recolour what the terminal shows; line breaks and tabs are the
    # traceback's own layout and stay.
    restore = _snapshot()
    stream = io.StringIO()
    message = "unknown item x\r\x1b[2K\x1b]0;title\x07\x9b31m\x00forged\tcol\nnext line"
    try:
        configure_logging(json=False, stream=stream)
        try:
            raise ValueError(message)
        except ValueError:
            get_logger("console").exception("structlog failure")
            logging.getLogger("console").exception("stdlib failure")
    finally:
        restore()
    output = stream.getvalue()
    escaped = r"unknown item x\x0d\x1b[2K\x1b]0;title\x07\x9b31m\x00forged" + "\tcol\nnext line"
    assert output.count(f"ValueError: {escaped}") == 2, output
    assert not any(c in output for c in "\r\x1b\x07\x9b\x00"), output
    assert output.count("Traceback (most recent call last):\n") == 2


def test_console_stack_info_keeps_its_line_breaks() -> None:
    restore = _snapshot()
    stream = io.StringIO()
    try:
        configure_logging(json=False, stream=stream)
        get_logger("console").info("structlog stack", stack_info=True)
        logging.getLogger("console").info("stdlib stack", stack_info=True)
    finally:
        restore()
    output = stream.getvalue()
    assert output.count("Stack (most recent call last):\n") == 2, output
    assert r"\x0a" not in output, output


def test_json_none_picks_console_on_a_terminal_and_json_otherwise() -> None:
    restore = _snapshot()
    terminal, pipe = Terminal(), io.StringIO()
    try:
        configure_logging(stream=terminal)
        get_logger("auto").info("on a terminal")
        configure_logging(stream=pipe)
        get_logger("auto").info("into a pipe")
    finally:
        restore()
    assert "on a terminal" in terminal.getvalue()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(terminal.getvalue())
    assert orjson.loads(pipe.getvalue())["event"] == "into a pipe"


def test_settings_choose_level_format_and_service() -> None:
    restore = _snapshot()
    stream = io.StringIO()
    try:
        configure_logging_from_settings(
            Settings(app_name="videos", log_level="warning", log_format="json"), stream=stream
        )
        get_logger("s").info("below the level")
        get_logger("s").warning("kept")
    finally:
        restore()
    (line,) = stream.getvalue().splitlines()
    parsed = orjson.loads(line)
    assert parsed["event"] == "kept"
    assert parsed["service"] == "videos"


def test_service_is_on_every_line(log_output: LogOutput) -> None:
    log_output.configure(service="videos")
    get_logger("a").info("structlog")
    logging.getLogger("a").info("stdlib")
    assert {line["service"] for line in log_output.lines()} == {"videos"}


def test_extra_processors_can_add_fields_and_drop_lines(log_output: LogOutput) -> None:
    def drop_health_checks(logger: Any, method_name: str, event_dict: Any) -> Any:
        if event_dict.get("path") == "/health":
            raise structlog.DropEvent
        event_dict["region"] = "eu"
        return event_dict

    log_output.configure(processors=[drop_health_checks])
    get_logger("a").info("health", path="/health")
    logging.getLogger("a").info("stdlib health", extra={"path": "/health"})
    get_logger("a").info("kept", path="/videos")
    assert [(line["event"], line["region"]) for line in log_output.lines()] == [("kept", "eu")]


def test_lines_from_many_threads_never_interleave(log_output: LogOutput) -> None:
    log_output.configure(level="INFO")
    payload = "x" * 2000

    def work(n: int) -> None:
        for i in range(50):
            get_logger("threads").info("structlog", n=n, i=i, payload=payload)
            logging.getLogger("threads").info("stdlib", extra={"n": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = log_output.lines()  # every line parses as one JSON object
    assert len(lines) == 6 * 50 * 2
    assert {(line["n"], line["i"]) for line in lines if line["event"] == "stdlib"} == {
        (n, i) for n in range(6) for i in range(50)
    }


@pytest.mark.parametrize("target", ["pipe", "file"])
def test_lines_from_many_threads_stay_whole_on_a_descriptor(tmp_path: Any, target: str) -> None:
    # Lines under and over PIPE_BUF, from many threads at once.
    received = bytearray()
    reader: threading.Thread | None = None
    if target == "pipe":
        read_end, write_end = os.pipe()
        stream = os.fdopen(write_end, "wb")

        def drain() -> None:
            while chunk := os.read(read_end, 65536):
                received.extend(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
    else:
        stream = open(tmp_path / "threads.log", "ab")  # noqa: SIM115 - closed below

    def work(n: int) -> None:
        for i in range(60):
            size = 100 if i % 2 else 6000  # under and over PIPE_BUF
            get_logger("threads").info("line", n=n, i=i, payload="x" * size)

    restore = _snapshot()
    try:
        configure_logging(json=True, stream=stream)
        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        restore()
        stream.close()
        if reader is not None:
            reader.join()
            os.close(read_end)
    data = bytes(received) if target == "pipe" else (tmp_path / "threads.log").read_bytes()
    lines = [orjson.loads(line) for line in data.splitlines()]
    assert sorted((line["n"], line["i"]) for line in lines) == [
        (n, i) for n in range(6) for i in range(60)
    ]
    assert all(len(line["payload"]) == (100 if line["i"] % 2 else 6000) for line in lines)


def test_a_short_line_never_lands_inside_a_long_line_on_a_slow_pipe() -> None:
    # stdout/stderr under docker, k8s and systemd are pipes. A line longer than
    # PIPE_BUF that finds the pipe full goes in pieces, and another writer's
    # write(2) could go in between: every line takes the output's lock.
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "wb")
    received = bytearray()
    long_started = threading.Event()

    def slow_drain() -> None:
        long_started.wait()
        time.sleep(0.3)  # the long write fills the pipe and blocks; short writers queue
        while chunk := os.read(read_end, 4096):
            received.extend(chunk)

    def long_lines() -> None:
        long_started.set()
        for i in range(3):
            get_logger("t").info("long", i=i, payload="x" * 300_000)

    def short_lines(n: int) -> None:
        long_started.wait()
        time.sleep(0.1)
        for i in range(200):
            get_logger("t").info("short", n=n, i=i)

    restore = _snapshot()
    reader = threading.Thread(target=slow_drain)
    reader.start()
    try:
        configure_logging(json=True, stream=stream)
        threads = [threading.Thread(target=long_lines)]
        threads += [threading.Thread(target=short_lines, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        restore()
        stream.close()
        reader.join()
        os.close(read_end)
    lines = [orjson.loads(line) for line in bytes(received).splitlines()]
    assert len(lines) == 3 + 3 * 200


def test_a_short_line_cut_short_is_not_split_by_another_threads_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rest of a write a signal cut short goes out before any other line.
    real_write = os.write
    first_half_out = threading.Event()
    other_done = threading.Event()
    calls = {"n": 0}

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # the first line: a signal cuts its write short
            written = real_write(fd, bytes(data[:10]))
            first_half_out.set()
            other_done.wait(5)
            return written
        return real_write(fd, data)

    path = tmp_path / "cut.log"
    restore = _snapshot()
    try:
        with open(path, "wb") as stream:
            configure_logging(json=True, stream=stream)
            monkeypatch.setattr(os, "write", write)
            first = threading.Thread(target=lambda: get_logger("a").info("first"))
            second = threading.Thread(target=lambda: get_logger("a").info("second"))
            first.start()
            first_half_out.wait(5)
            second.start()
            second.join(0.5)  # waits for the lock while "first" is half out
            other_done.set()
            first.join()
            second.join()
            monkeypatch.undo()
    finally:
        restore()
    events = [orjson.loads(line)["event"] for line in path.read_bytes().splitlines()]
    assert sorted(events) == ["first", "second"]


def _wait_or_kill(pid: int) -> None:
    """Wait up to 5 s for the forked child ``pid``; a child still running then is stuck: kill it."""
    deadline = time.monotonic() + 5
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return
        time.sleep(0.05)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
@pytest.mark.filterwarnings("ignore:This process.*multi-threaded:DeprecationWarning")
def test_a_child_forked_while_another_thread_writes_can_still_log(tmp_path: Any) -> None:
    # Another thread is mid-line (holding the output's lock: a long line on a
    # full pipe) when the application forks (multiprocessing, gunicorn --preload):
    # the child would inherit the lock held for good.

    path = tmp_path / "child.log"
    restore = _snapshot()
    try:
        with open(path, "wb") as stream:
            configure_logging(json=True, stream=stream)
            output = _SINK.pipeline.output
            holding, release = threading.Event(), threading.Event()

            def writer_mid_line() -> None:
                with output._lock:
                    holding.set()
                    release.wait(10)

            writer = threading.Thread(target=writer_mid_line)
            writer.start()
            holding.wait(5)
            pid = os.fork()
            if pid == 0:  # the child
                try:
                    get_logger("child").info("short")
                    get_logger("child").info("long", payload="x" * 10_000)
                finally:
                    os._exit(0)
            release.set()
            writer.join()
            _wait_or_kill(pid)
    finally:
        restore()
    events = [orjson.loads(line)["event"] for line in path.read_bytes().splitlines()]
    assert events == ["short", "long"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
@pytest.mark.filterwarnings("ignore:This process.*multi-threaded:DeprecationWarning")
def test_a_child_forked_while_a_new_logger_is_made_can_still_make_loggers(tmp_path: Any) -> None:
    # Another thread of the parent holds the loggers' lock (get_logger with a
    # new name, configure_logging) when the application forks: the child would
    # inherit it held for good, and its first get_logger() of a new name (or
    # configure_logging in a post-fork hook) would wait forever.
    from heygen_conventions import logging as heygen_logging

    path = tmp_path / "child.log"
    restore = _snapshot()
    try:
        with open(path, "wb") as stream:
            configure_logging(json=True, stream=stream)
            with heygen_logging._LOGGERS_LOCK:
                pid = os.fork()
                if pid == 0:  # the child
                    try:
                        get_logger("child.new").info("new logger")
                        configure_logging(json=True, stream=stream)
                        get_logger("child.new").info("configured again")
                    finally:
                        os._exit(0)
            _wait_or_kill(pid)
    finally:
        restore()
    events = [orjson.loads(line)["event"] for line in path.read_bytes().splitlines()]
    assert events == ["new logger", "configured again"]


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's async exceptions")
def test_an_exception_raised_as_a_writer_takes_the_lock_does_not_leave_it_held(
    tmp_path: Any,
) -> None:
    # A signal handler's exception (KeyboardInterrupt on Ctrl-C, SystemExit from a
    # worker's SIGQUIT handler) or an asynchronous exception is raised at the
    # first check the interpreter makes, which may be right after acquire()
    # returns and before the try that releases: the lock stays held for good and
    # every later line, from any thread, waits forever. ``with`` has no such gap.
    import ctypes

    class Interrupted(BaseException):
        pass

    with open(tmp_path / "out.log", "wb") as stream:
        output = Output(stream)
        output._lock.acquire()  # another thread mid-line: the writer waits in acquire()
        entered = threading.Event()

        def write() -> None:
            entered.set()
            with contextlib.suppress(Interrupted):
                output.write_line(b'{"event":"interrupted"}\n')

        writer = threading.Thread(target=write)
        writer.start()
        entered.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until it waits for the lock
            frame = sys._current_frames().get(writer.ident or 0)
            if frame is not None and frame.f_code.co_name == "write_line":
                break
            time.sleep(0.001)
        time.sleep(0.05)
        delivered = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(writer.ident or 0), ctypes.py_object(Interrupted)
        )
        assert delivered == 1
        output._lock.release()
        writer.join(5)
        assert not writer.is_alive()
        held = output._lock.locked()
        if held:
            output._lock.release()
        assert not held
        output.write_line(b'{"event":"after"}\n')
    assert b'"after"' in (tmp_path / "out.log").read_bytes()


def test_writes_to_a_text_stream_without_a_buffer() -> None:
    restore = _snapshot()
    stream = io.StringIO()
    try:
        configure_logging(json=True, stream=stream)
        get_logger("a").info("into text")
        logging.getLogger("a").info("stdlib into text")
        TestClient(_file_app()).get("/ping")
    finally:
        restore()
    events = [orjson.loads(x) for x in stream.getvalue().splitlines()]
    assert [e["event"] for e in events if not e["logger"].startswith("httpx")] == [
        "into text",
        "stdlib into text",
        "in the route",
        "request finished",
    ]


def test_a_closed_stream_never_raises() -> None:
    restore = _snapshot()
    stream = io.BytesIO()
    try:
        configure_logging(json=True, stream=stream)
        stream.close()
        get_logger("a").error("nowhere to go")
        logging.getLogger("a").error("nowhere either")
    finally:
        restore()


@pytest.mark.usefixtures("unconfigured")
def test_before_configuration_lines_go_to_stderr_already_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    get_logger("early").info("imported", password="hunter2")
    err = capsys.readouterr().err
    assert "imported" in err
    assert "hunter2" not in err
    assert "[REDACTED]" in err


@pytest.mark.usefixtures("unconfigured")
def test_loggers_bound_before_configuration_follow_it() -> None:
    bound_at_import = get_logger("early").bind(component="videos")
    seed_style = structlog.get_logger()  # what the conventions guide writes
    output = LogOutput()
    output.configure(level="INFO")
    bound_at_import.info("bound early", token="t0k3n")
    seed_style.info("seed style", api_key="k3y")
    bound = output.one(event="bound early")
    assert (bound["component"], bound["token"], bound["logger"]) == ("videos", REDACTED, "early")
    assert output.one(event="seed style")["api_key"] == REDACTED


def test_stack_info_is_rendered_on_both_paths(log_output: LogOutput) -> None:
    get_logger("s").info("structlog stack", stack_info=True)
    logging.getLogger("s").info("stdlib stack", stack_info=True)
    for event in ("structlog stack", "stdlib stack"):
        line = log_output.one(event=event)
        assert "test_stack_info_is_rendered_on_both_paths" in line["stack"]
        assert "stack_info" not in line


def test_writes_bytes_under_a_text_stream_that_has_a_buffer() -> None:
    restore = _snapshot()
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")  # what sys.stderr is
    try:
        configure_logging(json=True, stream=stream)
        get_logger("a").info("through the buffer", text="caf\u00e9")
    finally:
        restore()
    assert orjson.loads(raw.getvalue())["text"] == "caf\u00e9"


def test_the_root_handler_formats_a_record_as_its_json_line(log_output: LogOutput) -> None:
    (handler,) = our_handlers()
    record = logging.makeLogRecord(
        {"name": "fmt", "levelno": 20, "levelname": "INFO", "msg": "hi %s", "args": ("there",)}
    )
    line = orjson.loads(handler.format(record))
    assert (line["event"], line["logger"], line["level"]) == ("hi there", "fmt", "info")


def test_a_basic_config_console_handler_is_replaced_not_doubled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # logging.basicConfig() before configure_logging(): its handler would print
    # every line a second time, unredacted. A file or pytest's handlers stay.
    restore = _snapshot()
    root = logging.getLogger()
    before = list(root.handlers)
    kept = logging.FileHandler(os.devnull)
    try:
        console = logging.StreamHandler(sys.stderr)  # what logging.basicConfig() adds
        root.addHandler(console)
        root.addHandler(kept)
        output = LogOutput()
        output.configure(level="INFO")
        logging.getLogger("tests.basic").info("login password=hunter2")
        assert console not in root.handlers
        assert kept in root.handlers
        assert "hunter2" not in capsys.readouterr().err
        (line,) = output.find(logger="tests.basic")
        assert "hunter2" not in line["event"]
    finally:
        restore()
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        for handler in before:
            if handler not in root.handlers:
                root.addHandler(handler)
        kept.close()


def _file_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        get_logger("route").info("in the route")
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware)
    return app


def test_a_file_stream_gets_every_line_whole(tmp_path: Any) -> None:
    path = tmp_path / "app.log"
    restore = _snapshot()
    try:
        with open(path, "wb") as stream:
            stream.write(b"kept\n")  # written before: still first
            configure_logging(json=True, stream=stream)
            get_logger("a").info("structlog line", n=1)
            logging.getLogger("a").info("stdlib line")
            TestClient(_file_app()).get("/ping", headers={"X-Request-ID": "req-file"})
    finally:
        restore()
    first, *lines = path.read_bytes().splitlines()
    assert first == b"kept"
    events = [orjson.loads(line) for line in lines]  # each line one JSON object
    ours = [e for e in events if not e["logger"].startswith("httpx")]  # the test client's own
    assert [e["event"] for e in ours] == [
        "structlog line",
        "stdlib line",
        "in the route",
        "request finished",
    ]
    assert ours[-1]["request_id"] == ours[-2]["request_id"] == "req-file"


def test_a_closed_file_stream_never_writes_to_whatever_reuses_its_descriptor(
    tmp_path: Any,
) -> None:
    restore = _snapshot()
    try:
        stream = open(tmp_path / "closed.log", "wb")  # noqa: SIM115 - closed below, on purpose
        configure_logging(json=True, stream=stream)
        number = stream.fileno()
        stream.close()
        with open(tmp_path / "other.log", "wb") as other:
            reused = other.fileno() == number  # the lowest free descriptor: usually the same
            get_logger("a").error("nowhere to go")
            logging.getLogger("a").error("nowhere either")
    finally:
        restore()
    assert reused
    assert (tmp_path / "other.log").read_bytes() == b""


@pytest.mark.parametrize("layers", ["unbuffered binary", "text over unbuffered binary"])
def test_a_closed_unbuffered_stream_never_writes_to_whatever_reuses_its_descriptor(
    tmp_path: Any, layers: str
) -> None:
    # open(path, "ab", buffering=0), or sys.stderr under PYTHONUNBUFFERED=1 /
    # python -u (a text layer writing through to a FileIO): no buffer to flush
    # first, yet a closed stream must still write nothing.
    restore = _snapshot()
    try:
        raw = open(tmp_path / "closed.log", "ab", buffering=0)  # noqa: SIM115 - closed below
        stream: Any = raw
        if layers != "unbuffered binary":
            stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        configure_logging(json=True, stream=stream)
        number = raw.fileno()
        stream.close()
        with open(tmp_path / "other.log", "wb") as other:
            moved = other.fileno() != number  # usually the lowest free one: the same
            if moved:
                os.dup2(other.fileno(), number)  # the descriptor now another file's
            try:
                get_logger("a").error("nowhere to go")
                logging.getLogger("a").error("nowhere either")
            finally:
                if moved:
                    os.close(number)
    finally:
        restore()
    assert (tmp_path / "other.log").read_bytes() == b""


def test_a_line_the_descriptor_takes_in_parts_is_written_whole(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def seven_bytes_at_a_time(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data[:7]))  # what a full pipe or socket may do

    path = tmp_path / "parts.log"
    restore = _snapshot()
    try:
        with open(path, "wb") as stream:
            configure_logging(json=True, stream=stream)
            monkeypatch.setattr(os, "write", seven_bytes_at_a_time)
            get_logger("a").info("in parts", payload="x" * 100)
            monkeypatch.undo()
    finally:
        restore()
    (line,) = path.read_bytes().splitlines()
    assert orjson.loads(line)["payload"] == "x" * 100


def test_a_socket_stream_keeps_its_timeout_and_loses_no_line() -> None:
    # A socket's file is no plain descriptor to write to: TLS and timeouts live above it.
    ours, theirs = socket.socketpair()
    ours.settimeout(10)  # non-blocking underneath, waiting up to 10 s above
    stream = ours.makefile("wb")
    received = bytearray()

    def slow_reader() -> None:
        time.sleep(0.3)  # the socket's buffer fills up meanwhile
        while chunk := theirs.recv(65536):
            received.extend(chunk)

    reader = threading.Thread(target=slow_reader)
    reader.start()
    restore = _snapshot()
    try:
        configure_logging(json=True, stream=stream)
        for n in range(300):
            get_logger("s").info("over a socket", n=n, padding="x" * 1000)
    finally:
        restore()
        stream.close()
        ours.close()
        reader.join()
        theirs.close()
    lines = [orjson.loads(line) for line in received.splitlines()]
    assert [line["n"] for line in lines] == list(range(300))


@pytest.mark.parametrize("mode", ["wb", "w"])  # a binary file, a block-buffered text file
def test_lines_keep_their_place_among_the_applications_own_writes(tmp_path: Any, mode: str) -> None:
    path = tmp_path / "shared.log"
    restore = _snapshot()
    try:
        with open(path, mode) as stream:
            configure_logging(json=True, stream=stream)
            stream.write(b"header\n" if mode == "wb" else "header\n")  # held by the file object
            get_logger("a").info("between")
            stream.write(b"trailer\n" if mode == "wb" else "trailer\n")
    finally:
        restore()
    header, between, trailer = path.read_bytes().splitlines()
    assert (header, orjson.loads(between)["event"], trailer) == (b"header", "between", b"trailer")


def test_a_write_through_text_stream_is_not_flushed_per_line() -> None:
    # sys.stderr writes through to its buffer: nothing waits in its text layer.
    class Counting(io.TextIOWrapper):
        flushes = 0

        def flush(self) -> None:
            Counting.flushes += 1
            super().flush()

    stream = Counting(io.BytesIO(), write_through=True)
    restore = _snapshot()
    try:
        configure_logging(json=True, stream=stream)
        before = Counting.flushes
        for n in range(5):
            get_logger("a").info("line", n=n)
        assert Counting.flushes == before
        assert [orjson.loads(line)["n"] for line in stream.buffer.getvalue().splitlines()] == [
            0,
            1,
            2,
            3,
            4,
        ]
    finally:
        restore()


def test_a_text_stream_given_inline_stays_open(tmp_path: Any) -> None:
    path = tmp_path / "inline.log"
    restore = _snapshot()
    try:
        configure_logging(json=True, stream=open(path, "a"))  # noqa: SIM115 - as users write it
        gc.collect()  # nothing else holds the text wrapper
        get_logger("a").info("still written")
        inline = _SINK.pipeline.output._stream  # closed here only to end the test cleanly
    finally:
        restore()
    inline.close()
    assert orjson.loads(path.read_bytes())["event"] == "still written"


async def test_async_log_calls_never_raise_like_their_sync_twins(log_output: LogOutput) -> None:
    log = get_logger("r")
    # As the sync methods do, the async ones keep a format string that does
    # not match its arguments, and map a custom level to the nearest one below,
    # rather than raise TypeError or KeyError into the application.
    log.info("sync %s %s", 1)
    log.log(25, "sync custom level")
    await log.ainfo("async %s %s", 1)
    await log.alog(25, "async custom level")
    await log.awarning("async %(missing)s", {"other": 1})
    sync_line = log_output.one(event="sync %s %s")
    assert log_output.one(event="async %s %s")["positional_args"] == sync_line["positional_args"]
    assert log_output.one(event="async custom level")["level"] == "info"
    assert log_output.one(event="async %(missing)s")["level"] == "warning"


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_key_whose_repr_raises_keeps_the_line(log_output: LogOutput) -> None:
    # The line keeps its fields; it is not replaced by "Log call failed".
    get_logger("r").info("lookup", table={Unprintable(): 1, "password": "hunter2"}, n=1)
    line = log_output.one(event="lookup")
    assert line["n"] == 1
    assert line["table"]["password"] == REDACTED
    assert "hunter2" not in log_output.text


class Field(enum.StrEnum):
    USER_ID = "user_id"
    PASSWORD = "password"


def test_str_subclass_keys_keep_the_line(log_output: LogOutput) -> None:
    # orjson takes str keys only, not a StrEnum member: the line keeps its
    # fields under the member's text, not "Log call failed".
    fields = {Field.USER_ID: "u-1", Field.PASSWORD: "hunter2", "nested": {Field.USER_ID: 2}}
    get_logger("r").info("keyed by enum", **fields)
    logging.getLogger("r").info("stdlib keyed by enum", extra=fields)
    for event in ("keyed by enum", "stdlib keyed by enum"):
        line = log_output.one(event=event)
        assert line["user_id"] == "u-1"
        assert line["password"] == REDACTED
        assert line["nested"] == {"user_id": 2}
    assert "hunter2" not in log_output.text
    assert "Log call failed" not in log_output.text


def test_a_line_in_flight_during_a_reconfiguration_is_still_redacted(
    log_output: LogOutput,
) -> None:
    # configure_logging() swaps the chain every logger holds: a line another
    # thread is processing meanwhile runs through one chain, start to end, and
    # never skips a redactor by carrying on at its index into a shorter chain.
    reached, resume = threading.Event(), threading.Event()

    def tag(logger: object, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict["tagged"] = True
        return event_dict

    def pause(logger: object, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if event_dict.get("event") == "in flight":
            reached.set()
            resume.wait(5)
        return event_dict

    log_output.configure(level="DEBUG", processors=[tag, pause])
    worker = threading.Thread(target=lambda: get_logger("r").info("in flight", password="hunter2"))
    worker.start()
    assert reached.wait(5)
    log_output.configure(level="DEBUG")  # the same stream, no extra processors
    resume.set()
    worker.join(5)
    assert "hunter2" not in log_output.text
    assert log_output.one(event="in flight")["password"] == REDACTED
