"""Video templates: anyone lists them, admins add and remove them. ``/api/v1/templates``."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from examples.video_app.dependencies import AdminUser, TemplateServiceDep
from examples.video_app.docs import errors, ok, page
from examples.video_app.schemas import EXAMPLES, TemplateCreate, TemplateResponse
from heygen_conventions import APIResponse, ErrorDetail, PageParams, PaginatedResponse

router = APIRouter(prefix="/templates", tags=["templates"])

TemplatePage = Annotated[
    PageParams,
    Depends(PageParams.depends(sort_fields=("name", "created_at"), default_sort="name")),
]
_ADMIN_ONLY = "Requires role: admin"
_NOT_FOUND = ErrorDetail(code="template_not_found", message="Template not found")


@router.get(
    "",
    response_model=PaginatedResponse[TemplateResponse],
    summary="List templates",
    description="Every template, a page at a time; no sign-in needed. Sort by `name` or "
    "`created_at`, search names and descriptions.",
    response_description="One page of templates",
    responses={
        **page(EXAMPLES["template"]),
        **errors(
            422,
            e422=ErrorDetail(
                code="greater_than_equal",
                message="Input should be greater than or equal to 1",
                field="query.page",
            ),
        ),
    },
)
async def list_templates(
    params: TemplatePage, templates: TemplateServiceDep
) -> PaginatedResponse[TemplateResponse]:
    """List the templates videos can be rendered with."""
    return await templates.list_templates(params)


@router.post(
    "",
    response_model=APIResponse[TemplateResponse],
    status_code=201,
    summary="Create a template",
    description="Add a template (admins only). A name already taken answers 409.",
    response_description="The new template",
    responses={
        **ok(EXAMPLES["template"], message="Template created", status=201),
        **errors(
            400,
            401,
            403,
            409,
            422,
            e403=_ADMIN_ONLY,
            e409=ErrorDetail(
                code="unique_violation",
                message="A record with the same name already exists",
                field="name",
            ),
            e422=ErrorDetail(
                code="literal_error",
                message="Input should be '16:9', '9:16' or '1:1'",
                field="body.aspect_ratio",
            ),
        ),
    },
)
async def create_template(
    body: TemplateCreate, admin: AdminUser, templates: TemplateServiceDep
) -> APIResponse[TemplateResponse]:
    """Create a template (admin only)."""
    return APIResponse.ok(await templates.create_template(body), message="Template created")


@router.delete(
    "/{template_id}",
    status_code=204,
    summary="Delete a template",
    description="Remove a template (admins only). Videos made with it keep their content "
    "and lose the link (`template_id` becomes null).",
    response_description="Deleted; no body",
    responses=errors(
        401,
        403,
        404,
        422,
        e403=_ADMIN_ONLY,
        e404=_NOT_FOUND,
        e422=ErrorDetail(
            code="uuid_parsing", message="Input should be a valid UUID", field="path.template_id"
        ),
    ),
)
async def delete_template(
    template_id: uuid.UUID, admin: AdminUser, templates: TemplateServiceDep
) -> None:
    """Delete a template (admin only)."""
    await templates.delete_template(template_id)
