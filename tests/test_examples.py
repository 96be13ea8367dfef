"""The minimal demo app behaves as its docstring promises."""

from __future__ import annotations

from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from examples.minimal_app import app


@pytest.fixture
def client() -> TestClient:
    return TestClient(app)


def test_lists_a_page(client: TestClient) -> None:
    body = client.get("/api/v1/videos", params={"page": 2, "per_page": 2}).json()
    assert [v["title"] for v in body["data"]] == ["Demo video 3", "Demo video 4"]
    assert (body["total_count"], body["total_pages"], body["has_next"]) == (5, 3, True)


def test_get_found_and_missing(client: TestClient) -> None:
    assert client.get(f"/api/v1/videos/{UUID(int=1)}").json()["data"]["title"] == "Demo video 1"
    missing = client.get(f"/api/v1/videos/{UUID(int=99)}")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "not_found"


def test_create_then_conflict(client: TestClient) -> None:
    created = client.post("/api/v1/videos", json={"title": "Fresh take"})
    assert created.status_code == 201, created.text
    assert created.json()["message"] == "Video created"
    again = client.post("/api/v1/videos", json={"title": "Fresh take"})
    assert again.status_code == 409


def test_errors_share_the_envelope(client: TestClient) -> None:
    assert client.get("/api/v1/videos", params={"per_page": 1000}).status_code == 422
    assert client.delete("/api/v1/videos").status_code == 405
    boom = client.get("/api/v1/boom")
    assert boom.status_code == 500
    assert "never in the response" not in boom.text
