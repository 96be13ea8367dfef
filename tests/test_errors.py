from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Query, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, create_model

from heygen_conventions import (
    AppError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ErrorDetail,
    ErrorFormat,
    ErrorResponse,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    error_responses,
    install_exception_handlers,
)

SECRET = "db password is hunter2"


class Owner(BaseModel):
    email: str = Field(..., pattern=r"^[^@]+@[^@]+$")
    password: str = Field(..., min_length=12)


class VideoCreate(BaseModel):
    title: str = Field(..., min_length=1)
    owner: Owner


def make_app(format: ErrorFormat = "envelope") -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app, format=format)

    @app.get("/raise/{name}")
    async def raise_named(name: str) -> None:
        raise ERRORS[name]

    @app.post("/videos")
    async def create(body: VideoCreate) -> dict[str, str]:
        return {"title": body.title}

    @app.get("/items/{item_id}")
    async def item(
        item_id: int, per_page: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> dict[str, int]:
        return {"item_id": item_id, "per_page": per_page}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET)

    @app.get("/boom-sync")
    def boom_sync() -> None:
        raise KeyError(SECRET)

    @app.get("/http/{code}")
    async def http(code: int) -> None:
        raise HTTPException(status_code=code, detail=f"custom {code}", headers={"X-Extra": "1"})

    @app.get("/dict-detail")
    async def dict_detail() -> None:
        raise HTTPException(status_code=400, detail={"internal": SECRET})

    @app.delete("/nothing", status_code=204)
    async def nothing() -> Response:
        raise NotFoundError("gone")

    return app


ERRORS: dict[str, AppError] = {
    "app": AppError(),
    "bad_request": BadRequestError("Malformed cursor"),
    "auth": AuthenticationError("Token expired"),
    "forbidden": PermissionDeniedError(),
    "not_found": NotFoundError("Video not found"),
    "conflict": ConflictError(
        "Title taken", details=[ErrorDetail(code="duplicate", message="taken", field="title")]
    ),
    "invalid": InvalidInputError("Duration must be positive"),
    "rate": RateLimitedError(retry_after=30),
    "unavailable": ServiceUnavailableError("Database unavailable", retry_after=5),
    "domain": type("VideoNotFoundError", (NotFoundError,), {"code": "video_not_found"})(),
}

EXPECTED = {
    "app": (500, "internal_error", "Internal server error"),
    "bad_request": (400, "bad_request", "Malformed cursor"),
    "auth": (401, "not_authenticated", "Token expired"),
    "forbidden": (403, "permission_denied", "Permission denied"),
    "not_found": (404, "not_found", "Video not found"),
    "conflict": (409, "conflict", "Title taken"),
    "invalid": (422, "invalid_input", "Duration must be positive"),
    "rate": (429, "rate_limited", "Too many requests"),
    "unavailable": (503, "service_unavailable", "Database unavailable"),
    "domain": (404, "video_not_found", "Not found"),
}


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app())


@pytest.fixture
def problem_client() -> TestClient:
    return TestClient(make_app("problem"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_app_errors_in_the_envelope(client: TestClient, name: str) -> None:
    status, code, message = EXPECTED[name]
    response = client.get(f"/raise/{name}", headers={"X-Request-ID": f"req-{name}"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["message"] == message
    assert body["data"] is None
    assert body["metadata"] == {"request_id": f"req-{name}", "error_code": code}
    assert response.headers["x-request-id"] == f"req-{name}"
    if name == "conflict":
        assert body["errors"] == [{"code": "duplicate", "message": "taken", "field": "title"}]
    else:
        assert body["errors"] == [{"code": code, "message": message, "field": None}]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_app_errors_as_problem_details(problem_client: TestClient, name: str) -> None:
    status, code, message = EXPECTED[name]
    response = problem_client.get(f"/raise/{name}", headers={"X-Request-ID": "abc"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["detail"] == message
    assert body["code"] == code
    assert body["instance"] == f"/raise/{name}"
    assert body["request_id"] == "abc"
    assert body["title"]
    assert body["errors"]


def test_authentication_error_challenges_bearer(client: TestClient) -> None:
    response = client.get("/raise/auth")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("name", "seconds"), [("rate", "30"), ("unavailable", "5")])
def test_retryable_errors_send_retry_after(client: TestClient, name: str, seconds: str) -> None:
    assert client.get(f"/raise/{name}").headers["retry-after"] == seconds


def test_retry_after_without_a_value_sends_no_header() -> None:
    assert "Retry-After" not in RateLimitedError().headers
    with pytest.raises(ValueError, match="retry_after"):
        RateLimitedError(retry_after=-1)


def test_nested_body_field_errors_name_their_location_and_never_echo_input(
    client: TestClient,
) -> None:
    password = "short-pass"
    response = client.post(
        "/videos", json={"title": "", "owner": {"email": "nope", "password": password}}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"] == "Request validation failed"
    fields = {e["field"]: e["code"] for e in body["errors"]}
    assert fields == {
        "body.title": "string_too_short",
        "body.owner.email": "string_pattern_mismatch",
        "body.owner.password": "string_too_short",
    }
    assert password not in response.text
    assert "nope" not in response.text


def test_missing_body_field(client: TestClient) -> None:
    body = client.post("/videos", json={"title": "x"}).json()
    assert body["errors"] == [
        {"code": "missing", "message": "Field required", "field": "body.owner"}
    ]


@pytest.mark.parametrize("format", ["envelope", "problem"])
def test_malformed_json_body_names_the_body_not_a_character_offset(format: ErrorFormat) -> None:
    response = TestClient(make_app(format)).post(
        "/videos", content=b'{"title": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"code": "json_invalid", "message": "JSON decode error", "field": "body"}
    ]


def test_query_and_path_parameter_errors(client: TestClient) -> None:
    response = client.get("/items/abc", params={"per_page": 1000})
    assert response.status_code == 422
    fields = {e["field"]: e["code"] for e in response.json()["errors"]}
    assert fields == {"path.item_id": "int_parsing", "query.per_page": "less_than_equal"}


def test_validation_error_as_problem(problem_client: TestClient) -> None:
    response = problem_client.get("/items/1", params={"per_page": 0})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["field"] == "query.per_page"


def test_unknown_route_is_a_404_in_the_envelope(client: TestClient) -> None:
    response = client.get("/does-not-exist")
    assert response.status_code == 404
    assert response.json()["errors"] == [
        {"code": "not_found", "message": "Not Found", "field": None}
    ]


def test_wrong_method_is_a_405_that_keeps_allow(client: TestClient) -> None:
    response = client.put("/videos", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


def test_a_405_allows_the_methods_of_every_route_at_the_path() -> None:
    # Starlette names only the first matching route's methods.
    app = FastAPI()
    install_exception_handlers(app)
    router = APIRouter(prefix="/items")

    @app.get("/items")
    async def list_items() -> list[int]:
        return []

    @router.post("", status_code=201)
    async def add_item() -> int:
        return 1

    @router.delete("/{item_id}", status_code=204)
    async def remove_item(item_id: int) -> None:
        return None

    app.include_router(router)
    with TestClient(app) as client:
        response = client.options("/items")
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["errors"][0]["code"] == "method_not_allowed"
        assert client.put("/items/1").headers["allow"] == "DELETE"


def test_http_exception_keeps_detail_and_headers(client: TestClient) -> None:
    response = client.get("/http/418")
    assert response.status_code == 418
    assert response.headers["x-extra"] == "1"
    assert response.json()["errors"][0] == {
        "code": "i'm_a_teapot",
        "message": "custom 418",
        "field": None,
    }
    conflict = client.get("/http/409").json()
    assert conflict["errors"][0]["code"] == "conflict"


def test_non_string_http_detail_is_not_echoed(client: TestClient) -> None:
    response = client.get("/dict-detail")
    assert response.status_code == 400
    assert SECRET not in response.text
    assert response.json()["message"] == "Bad Request"


@pytest.mark.parametrize("path", ["/boom", "/boom-sync"])
def test_unexpected_exception_is_generic_and_logged_once(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = client.get(path, headers={"X-Request-ID": "req-boom"})
    assert response.status_code == 500
    assert SECRET not in response.text
    assert response.json() == {
        "success": False,
        "message": "Internal server error",
        "data": None,
        "errors": [{"code": "internal_error", "message": "Internal server error", "field": None}],
        "metadata": {"request_id": "req-boom", "error_code": "internal_error"},
    }
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    record = tracebacks[0]
    assert record.levelno == logging.ERROR
    assert record.name == "heygen_conventions.errors"
    assert record.request_id == "req-boom"  # type: ignore[attr-defined]
    assert SECRET in caplog.text  # the log keeps what the response hides


def test_unexpected_exception_as_problem(problem_client: TestClient) -> None:
    response = problem_client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "Internal server error"
    assert SECRET not in response.text


def test_expected_errors_are_logged_without_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="heygen_conventions.errors"):
        client.get("/raise/not_found")
        client.get("/items/x")
    assert caplog.records
    assert all(not r.exc_info for r in caplog.records)
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_head_requests_get_no_error_body(client: TestClient) -> None:
    response = client.head("/does-not-exist")
    assert response.status_code == 404
    assert response.content == b""


def test_error_on_a_204_route_still_has_a_body(client: TestClient) -> None:
    response = client.delete("/nothing")
    assert response.status_code == 404
    assert response.json()["message"] == "gone"


def test_request_id_is_generated_when_absent_or_unsafe(client: TestClient) -> None:
    generated = client.get("/raise/not_found").json()["metadata"]["request_id"]
    assert len(generated) == 32
    assert generated.isalnum()
    for unsafe in ["a b", "x" * 129, "id\x1b[31m", "../etc"]:
        got = client.get("/raise/not_found", headers={"X-Request-ID": unsafe}).json()
        assert got["metadata"]["request_id"] != unsafe
        assert len(got["metadata"]["request_id"]) == 32


def test_installing_twice_is_refused() -> None:
    app = FastAPI()
    install_exception_handlers(app)
    with pytest.raises(RuntimeError, match="already"):
        install_exception_handlers(app)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        install_exception_handlers(FastAPI(), format="xml")  # type: ignore[arg-type]


def test_error_classes_import_no_web_framework() -> None:
    import ast
    from pathlib import Path

    import heygen_conventions.errors as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported: list[Any] = [
        n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
    ]
    assert not [m for m in imported if m and m.split(".")[0] in {"fastapi", "starlette"}]


def test_app_error_repr_and_custom_code() -> None:
    error = NotFoundError("Video not found", code="video_not_found")
    assert repr(error) == "NotFoundError('Video not found', code='video_not_found')"
    assert str(error) == "Video not found"
    assert NotFoundError.code == "not_found"


@pytest.mark.parametrize("code", [204, 304])
def test_no_content_statuses_carry_no_body(client: TestClient, code: int) -> None:
    response = client.get(f"/http/{code}")
    assert response.status_code == code
    assert response.content == b""
    assert response.headers["x-extra"] == "1"


def test_error_responses_document_what_the_handlers_send() -> None:
    app = FastAPI()
    install_exception_handlers(app)
    invalid = ErrorDetail(code="string_too_short", message="Too short", field="body.title")
    documented = error_responses({401: "Not authenticated", 404: "Video not found", 422: invalid})

    @app.get("/videos/{video_id}", responses=documented)
    async def get_video(video_id: int) -> dict[str, int]:
        raise NotFoundError("Video not found")

    schema = app.openapi()
    responses = schema["paths"]["/videos/{video_id}"]["get"]["responses"]
    not_found = responses["404"]["content"]["application/json"]
    assert not_found["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    sent = TestClient(app).get("/videos/1", headers={"X-Request-ID": "r-1"}).json()
    example = not_found["example"]
    # FastAPI drops null values from the document; the handlers' wrapper puts them back.
    assert example.keys() == sent.keys()
    assert example["message"] == sent["message"]
    assert example["errors"] == sent["errors"]
    # 422 replaces FastAPI's HTTPValidationError, which is not what the handlers send.
    validation = responses["422"]["content"]["application/json"]
    assert validation["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert validation["example"]["message"] == "Request validation failed"
    assert validation["example"]["errors"] == [invalid.model_dump()]
    assert sent["errors"] == [{"code": "not_found", "message": "Video not found", "field": None}]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "WWW-Authenticate" in responses["401"]["headers"]
    assert responses["401"]["content"]["application/json"]["example"]["errors"][0]["code"] == (
        "not_authenticated"
    )


def test_error_responses_as_problem_details() -> None:
    documented = error_responses(
        {409: ErrorDetail(code="stale_version", message="Reload", field="version")},
        format="problem",
    )
    example = documented[409]["content"]["application/problem+json"]["example"]
    assert (example["status"], example["code"], example["detail"]) == (
        409,
        "stale_version",
        "Reload",
    )
    assert "model" not in documented[409]


# --- the 422 in the OpenAPI document ------------------------------------------------


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    schema: dict[str, Any] = document["components"]["schemas"][ref.removeprefix(prefix)]
    return schema


def dangling_refs(document: dict[str, Any]) -> list[str]:
    text = json.dumps(document)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    return sorted(refs - document.get("components", {}).get("schemas", {}).keys())


def test_openapi_documents_the_422_body_clients_receive() -> None:
    app = make_app()
    document = app.openapi()
    validation = document["paths"]["/videos"]["post"]["responses"]["422"]
    assert validation["description"] == "Request validation failed"
    schema_ref = validation["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref == "#/components/schemas/ErrorResponse"
    for path, method in [("/items/{item_id}", "get"), ("/raise/{name}", "get")]:
        assert document["paths"][path][method]["responses"]["422"] == validation
    # Routes without inputs have no automatic 422.
    assert "422" not in document["paths"]["/boom"]["get"]["responses"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "ValidationError" not in document["components"]["schemas"]
    assert dangling_refs(document) == []
    # The documented schema describes what the handler really sends.
    sent = TestClient(app).post("/videos", json={"title": ""}).json()
    schema = resolve(document, schema_ref)
    assert set(sent) == set(schema["properties"])
    assert set(schema["required"]) <= set(sent)
    ErrorResponse.model_validate(sent)


def test_openapi_documents_the_422_as_problem_details() -> None:
    app = make_app("problem")
    document = app.openapi()
    validation = document["paths"]["/videos"]["post"]["responses"]["422"]
    assert list(validation["content"]) == ["application/problem+json"]
    schema = resolve(document, validation["content"]["application/problem+json"]["schema"]["$ref"])
    sent = TestClient(app).post("/videos", json={}).json()
    assert set(sent) == set(schema["properties"])
    assert set(schema["required"]) <= set(sent)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert dangling_refs(document) == []


def test_openapi_is_cached_and_follows_routes_added_later() -> None:
    app = make_app()
    first = app.openapi()
    assert app.openapi() is first
    assert app.openapi_schema is first

    @app.get("/later/{later_id}")
    async def later(later_id: int) -> dict[str, int]:
        return {"later_id": later_id}

    document = app.openapi()
    validation = document["paths"]["/later/{later_id}"]["get"]["responses"]["422"]
    assert validation["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_an_openapi_customised_before_the_handlers_is_kept() -> None:
    app = FastAPI()
    generate = app.openapi
    calls = []

    def custom_openapi() -> dict[str, Any]:
        calls.append(1)
        document = generate()
        document["info"]["x-logo"] = {"url": "https://example.com/logo.png"}
        return document

    app.openapi = custom_openapi  # type: ignore[method-assign]
    install_exception_handlers(app)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    document = app.openapi()
    assert document["info"]["x-logo"] == {"url": "https://example.com/logo.png"}
    validation = document["paths"]["/items/{item_id}"]["get"]["responses"]["422"]
    assert validation["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert app.openapi() is document


def test_route_documented_422_and_fastapis_schemas_still_named_elsewhere_are_kept() -> None:
    app = FastAPI()
    install_exception_handlers(app)
    invalid = ErrorDetail(code="uuid_parsing", message="Not a UUID", field="path.video_id")

    @app.get("/videos/{video_id}", responses=error_responses({422: invalid}))
    async def get_video(video_id: int) -> dict[str, int]:
        return {"video_id": video_id}

    @app.webhooks.post("video-rendered")
    def video_rendered(body: VideoCreate) -> None:
        """Sent to subscribers; their answers are not this app's handlers' to document."""

    document = app.openapi()
    own = document["paths"]["/videos/{video_id}"]["get"]["responses"]["422"]
    assert own["content"]["application/json"]["example"]["errors"] == [invalid.model_dump()]
    hook = document["webhooks"]["video-rendered"]["post"]["responses"]["422"]
    assert hook["content"]["application/json"]["schema"]["$ref"].endswith("/HTTPValidationError")
    assert {"HTTPValidationError", "ValidationError"} <= document["components"]["schemas"].keys()
    assert dangling_refs(document) == []


# An application model that happens to share the library's model name.
AppErrorDetail = create_model("ErrorDetail", reason=(str, ...))


def test_an_app_model_of_the_same_name_is_not_overwritten() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/reports")
    async def report(body: AppErrorDetail) -> dict[str, str]:  # type: ignore[valid-type]
        return {}

    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert "reason" in schemas["ErrorDetail"]["properties"]
    ref = document["paths"]["/reports"]["post"]["responses"]["422"]["content"]["application/json"]
    envelope = resolve(document, ref["schema"]["$ref"])
    item_ref = envelope["properties"]["errors"]["items"]["$ref"]
    assert "field" in resolve(document, item_ref)["properties"]
    assert item_ref != "#/components/schemas/ErrorDetail"
    assert dangling_refs(document) == []
