"""Errors as RFC 9457 problem details (`application/problem+json`).

Every problem has a machine-readable `type` (urn:kassa:problem:<slug>), and where a request
field is to blame, `field` names it (`items[0].unit_amount`, `Idempotency-Key`); validation
problems list every offending field under `errors`.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

log = structlog.get_logger("api")
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.headers = headers
        self.body: dict[str, Any] = {
            "type": f"urn:kassa:problem:{slug}",
            "title": title,
            "status": status,
            **({"detail": detail} if detail else {}),
            **({"field": field} if field else {}),
            **extra,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body, status_code=self.status, media_type=MEDIA_TYPE, headers=self.headers
        )


def field_path(loc: tuple | list) -> str:
    """('body', 'items', 0, 'unit_amount') -> 'items[0].unit_amount'."""
    where, *rest = loc if loc else ("body",)
    if where == "header" and rest:
        return "-".join(part.capitalize() for part in str(rest[0]).split("-"))
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or str(where)


def validation_problem(errors: list[dict]) -> Problem:
    """Pydantic's errors, each pointing at its field."""
    listed = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors]
    if any(e["type"] == "json_invalid" for e in errors):
        return Problem(
            400, "malformed-json", "The request body is not valid JSON", field="body", errors=listed
        )
    first = listed[0]
    return Problem(
        422,
        "validation-error",
        "The request is not valid",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=listed,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if hasattr(exc, "problem"):
            return exc.problem().response()
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. a 5000-digit number)
            return Problem(
                400,
                "malformed-json",
                "The request body could not be read",
                str(exc.detail),
                field="body",
            ).response()
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return Problem(exc.status_code, slug, str(exc.detail)).response()

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
        # The Temporal server is down or restarting (the client's own retries ran out):
        # nothing was decided, and the same request again is safe.
        if exc.status != RPCStatusCode.UNAVAILABLE:
            return await _unexpected(request, exc)
        log.warning("temporal unavailable", path=request.url.path, error=str(exc))
        return Problem(
            503, "temporal-unavailable", "Try again later", headers={"Retry-After": "2"}
        ).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return Problem(500, "internal-error", "Something went wrong on our side").response()
