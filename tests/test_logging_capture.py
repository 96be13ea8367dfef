"""heygen_conventions.testing.capture_logs: asserting on log events in application tests."""

from __future__ import annotations

import logging
import threading

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from heygen_conventions import RequestContextMiddleware, get_logger, install_exception_handlers
from heygen_conventions._log_pipeline import HANDLER_MARK
from heygen_conventions.testing import capture_logs
from tests.fixtures.logging import LogOutput


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, HANDLER_MARK, False)]


@pytest.mark.usefixtures("unconfigured")
def test_captures_processed_events_from_both_paths_and_all_threads() -> None:
    with capture_logs() as logs:
        get_logger("app").debug("structlog debug", video_id="v1", password="hunter2")
        worker = threading.Thread(target=logging.getLogger("app").warning, args=("stdlib",))
        worker.start()
        worker.join()
    structlog_event, stdlib_event = logs
    assert structlog_event["event"] == "structlog debug"
    assert structlog_event["level"] == "debug"
    assert structlog_event["logger"] == "app"
    assert structlog_event["password"] == "[REDACTED]"
    assert stdlib_event["event"] == "stdlib"
    assert stdlib_event["level"] == "warning"


@pytest.mark.usefixtures("unconfigured")
def test_without_configuration_nothing_is_written_and_nothing_stays_installed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config_before = structlog.get_config()["processors"][:]
    with capture_logs() as logs:
        assert len(our_handlers()) == 1
        get_logger("quiet").info("captured only")
        logging.getLogger("quiet").error("stdlib captured only")
    assert [event["event"] for event in logs] == ["captured only", "stdlib captured only"]
    assert our_handlers() == []
    assert structlog.get_config()["processors"] == config_before
    assert "captured only" not in capsys.readouterr().err
    with capture_logs() as later:
        pass
    assert later == []


def test_with_configuration_lines_are_still_written(log_output: LogOutput) -> None:
    with capture_logs() as logs:
        get_logger("app").info("both")
    assert [event["event"] for event in logs] == ["both"]
    assert log_output.one(event="both")
    get_logger("app").info("after")
    assert len(logs) == 1


def test_nested_captures_each_see_their_block(log_output: LogOutput) -> None:
    with capture_logs() as outer:
        get_logger("a").info("one")
        with capture_logs() as inner:
            get_logger("a").info("two")
        get_logger("a").info("three")
    assert [e["event"] for e in outer] == ["one", "two", "three"]
    assert [e["event"] for e in inner] == ["two"]


def test_an_application_test_can_assert_on_the_request_lines(log_output: LogOutput) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/videos/{video_id}")
    async def get_video(video_id: str) -> dict[str, str]:
        get_logger("videos").info("video served", video_id=video_id)
        return {"id": video_id}

    app.add_middleware(RequestContextMiddleware)
    with capture_logs() as logs:
        response = TestClient(app).get("/videos/v1", headers={"X-Request-ID": "req-7"})
    assert response.status_code == 200, response.text
    served = [e for e in logs if e["event"] == "video served"]
    assert served == [
        {
            "request_id": "req-7",
            "method": "GET",
            "path": "/videos/v1",
            "client": served[0]["client"],
            "logger": "videos",
            "event": "video served",
            "video_id": "v1",
            "level": "info",
            "timestamp": served[0]["timestamp"],
        }
    ]
