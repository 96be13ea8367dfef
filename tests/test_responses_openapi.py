"""OpenAPI names of parametrised envelopes, and the documented error bodies."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import AfterValidator, BaseModel

from heygen_conventions import APIResponse, error_responses, install_exception_handlers


def _strip(value: str) -> str:
    return value.strip()


def test_schema_names_carry_no_memory_addresses() -> None:
    app = FastAPI()
    app.get("/names", response_model=APIResponse[Annotated[str, AfterValidator(_strip)]])(
        lambda: None
    )
    names = set(app.openapi()["components"]["schemas"])
    assert not [name for name in names if re.search(r"0x[0-9a-f]{6,}", name)], names


def test_fixed_and_variable_tuples_get_different_names() -> None:
    assert APIResponse[tuple[int, ...]].__name__ != APIResponse[tuple[int]].__name__


# An application model named like the library's error models.
AppErrorResponse: Any = type(
    "ErrorResponse", (BaseModel,), {"__annotations__": {"reason": str}, "__module__": "pkg_app"}
)


def test_the_error_model_is_documented_once_beside_a_same_named_app_model() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/api/v1/legacy/{item_id}", responses=error_responses({404: "Not found"}))
    async def legacy(item_id: int) -> AppErrorResponse:
        raise NotImplementedError

    document = app.openapi()
    schemas = document["components"]["schemas"]
    envelopes = [
        name
        for name, schema in schemas.items()
        if set(schema.get("properties", {})) == {"success", "message", "data", "errors", "metadata"}
    ]
    assert len(envelopes) == 1, envelopes
    responses = document["paths"]["/api/v1/legacy/{item_id}"]["get"]["responses"]
    ref_404 = responses["404"]["content"]["application/json"]["schema"]["$ref"]
    ref_422 = responses["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref_404 == ref_422


def test_documented_error_examples_keep_their_nulls() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/api/v1/videos/{video_id}", responses=error_responses({404: "Video not found"}))
    async def get_video(video_id: str) -> dict[str, str]:
        raise NotImplementedError

    example = app.openapi()["paths"]["/api/v1/videos/{video_id}"]["get"]["responses"]["404"][
        "content"
    ]["application/json"]["example"]
    # The body the handlers send: data null, each error with its field (null here).
    assert example["data"] is None
    assert example["errors"] == [{"code": "not_found", "message": "Video not found", "field": None}]
