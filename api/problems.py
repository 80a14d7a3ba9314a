"""Errors as RFC 9457 problem details (`application/problem+json`), from the one catalogue
(kassa/errors.py). Every problem has a machine-readable `type` (urn:kassa:problem:<slug>),
and where a request field is to blame, `field` names it (`items[0].unit_amount`,
`Idempotency-Key`); validation problems list every offending field under `errors`.

One handler answers every catalogue error, whoever raised it (a route, a repository, a
workflow's update validator); `responses` documents a route's problems in its OpenAPI.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from kassa import errors

log = structlog.get_logger("api")
MEDIA_TYPE = "application/problem+json"


def answer(err: errors.KassaError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(err.headers() or {}), **(headers or {})}
    return JSONResponse(
        err.problem(), status_code=err.status, media_type=MEDIA_TYPE, headers=headers or None
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


def invalid(listed: list[dict[str, str]]) -> errors.ValidationFailed:
    """A 422 naming every offending field: [{"field": …, "message": …}, …]."""
    first = listed[0]
    return errors.ValidationFailed(
        f"{first['field']}: {first['message']}", field=first["field"], errors=listed
    )


def validation_problem(pydantic_errors: list[dict]) -> errors.KassaError:
    """Pydantic's errors, each pointing at its field."""
    listed = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in pydantic_errors]
    if any(e["type"] == "json_invalid" for e in pydantic_errors):
        return errors.MalformedJson(errors=listed)
    return invalid(listed)


def responses(*kinds: type[errors.KassaError]) -> dict[int | str, dict[str, Any]]:
    """A route's possible problems, for its OpenAPI `responses` (one entry per status)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for kind in kinds:
        entry = documented.setdefault(
            kind.status,
            {
                "description": "",
                "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        )
        entry["description"] = "; ".join(
            filter(None, [entry["description"], f"`{kind.slug}`: {kind.title}"])
        )
    return documented


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.KassaError)
    async def _kassa(request: Request, exc: errors.KassaError) -> JSONResponse:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(validation_problem(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. a 5000-digit number)
            return answer(errors.MalformedJson("The request body could not be read"))
        kind = {404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.BodyTooLarge}
        if exc.status_code in kind:
            return answer(kind[exc.status_code](str(exc.detail)), exc.headers)
        problem = errors.KassaError(str(exc.detail))
        # An HTTP error of Starlette's own: pass its status on.
        problem.status, problem.slug = exc.status_code, "http-error"
        return answer(problem, exc.headers)

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
        # The Temporal server is down or restarting (the client's own retries ran out):
        # nothing was decided, and the same request again is safe.
        if exc.status != RPCStatusCode.UNAVAILABLE:
            return await _unexpected(request, exc)
        log.warning("temporal unavailable", path=request.url.path, error=str(exc))
        return answer(errors.TemporalUnavailable())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return answer(errors.KassaError())
