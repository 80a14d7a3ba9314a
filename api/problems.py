"""Errors as RFC 9457 problem details (`application/problem+json`), from the one catalogue
(kassa/errors.py). Every problem has a machine-readable `type` (urn:kassa:problem:<slug>),
and where a request field is to blame, `field` names it (`items[0].unit_amount`,
`Idempotency-Key`); validation problems list every offending field under `errors`.

One handler answers every catalogue error, whoever raised it (a route, a repository, a
workflow's update validator); `responses` documents a route's problems in its OpenAPI, and
`document_shapes` adds those every route of its shape can answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from kassa import errors

if TYPE_CHECKING:
    from fastapi._compat import ModelField

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


# A body can be wrong in thousands of places (a 64 KiB object of unknown fields): problems
# list the first of them, and say how many more there were.
MAX_ERRORS = 50


def _bounded(listed: list[dict[str, str]]) -> dict[str, Any]:
    more = {"more_errors": len(listed) - MAX_ERRORS} if len(listed) > MAX_ERRORS else {}
    return {"errors": listed[:MAX_ERRORS], **more}


def invalid(listed: list[dict[str, str]]) -> errors.ValidationFailed:
    """A 422 naming every offending field: [{"field": …, "message": …}, …] (the first
    MAX_ERRORS of them)."""
    first = listed[0]
    return errors.ValidationFailed(
        f"{first['field']}: {first['message']}", field=first["field"], **_bounded(listed)
    )


def validation_problem(pydantic_errors: list[dict]) -> errors.KassaError:
    """Pydantic's errors, each pointing at its field."""
    listed = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in pydantic_errors]
    if any(e["type"] == "json_invalid" for e in pydantic_errors):
        return errors.MalformedJson(**_bounded(listed))
    return invalid(listed)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem detail.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {
            "type": "string",
            "description": "What went wrong, for machines: `urn:kassa:problem:<slug>`.",
            "pattern": "^urn:kassa:problem:[a-z0-9-]+$",
        },
        "title": {"type": "string", "description": "What went wrong, for people."},
        "status": {"type": "integer", "description": "The HTTP status code."},
        "detail": {"type": "string", "description": "This occurrence, in words."},
        "field": {
            "type": "string",
            "description": "The request field to blame: `items[0].unit_amount`, "
            "`Idempotency-Key`, `Authorization`, `body`…",
        },
        "errors": {
            "type": "array",
            "description": "For `validation-error` and `malformed-json`: every offending "
            f"field, the first {MAX_ERRORS} of them.",
            "maxItems": MAX_ERRORS,
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "more_errors": {
            "type": "integer",
            "description": f"How many offending fields there were beyond the {MAX_ERRORS} listed.",
        },
        "limit": {
            "type": "string",
            "description": "For `rate-limited`: the limit, e.g. `50 per 1 second`.",
        },
        "max_refunds": {
            "type": "integer",
            "description": "For `too-many-refunds`: how many refunds an order may have.",
        },
    },
    # Some problems say more, e.g. `order_id` for an `idempotency-key-reused`.
    "additionalProperties": True,
}
PROBLEM_REF = "#/components/schemas/Problem"

# The headers problems carry (KassaError.headers), as the OpenAPI documents them.
HEADERS: dict[str, dict[str, Any]] = {
    "WWW-Authenticate": {
        "description": "How to authenticate: `Bearer`.",
        "schema": {"type": "string", "enum": ["Bearer"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before sending the same request again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}


def _add(entry: dict[str, Any], kind: type[errors.KassaError]) -> None:
    """Document one more problem in a status's response: its slug and title, and its headers
    (required when every problem of that status sends them)."""
    described = f"`{kind.slug}`: {kind.title}"
    if described in entry.get("description", ""):
        return
    first = not entry.get("description")
    entry["description"] = "; ".join(filter(None, [entry.get("description"), described]))
    entry["content"] = {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
    sent = set(kind().headers() or {})
    documented = entry.setdefault("headers", {})
    for name in sent - set(documented):
        documented[name] = {**HEADERS[name], "required": first}
    for name in set(documented) - sent:
        documented[name]["required"] = False
    if not documented:
        del entry["headers"]


def responses(*kinds: type[errors.KassaError]) -> dict[int | str, dict[str, Any]]:
    """A route's possible problems, for its OpenAPI `responses` (one entry per status). The
    problems a route answers for its shape (a key, a body, parameters) are added by
    `document_shapes`."""
    documented: dict[int | str, dict[str, Any]] = {}
    for kind in kinds:
        _add(documented.setdefault(kind.status, {}), kind)
    return documented


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def _validated(parameter: ModelField) -> bool:
    """Whether a parameter can be refused: anything but a plain string."""
    return parameter.field_info.annotation is not str or bool(parameter.field_info.metadata)


def shape_problems(route: APIRoute, authenticates: Any) -> list[type[errors.KassaError]]:
    """The problems any route of this shape can answer, whatever it does: 401 and 429 when
    it asks for a key (`authenticates` among its dependencies), 400 and 413 when it reads a
    JSON body, 422 when a body or a parameter is validated."""
    kinds: list[type[errors.KassaError]] = []
    dependants = list(_dependants(route.dependant))
    if any(d.call is authenticates for d in dependants):
        kinds += [errors.Unauthorized, errors.RateLimited]  # a key, and its rate limit
    if route.body_field is not None:
        kinds += [errors.MalformedJson, errors.BodyTooLarge]
    parameters = [p for d in dependants for p in (*d.path_params, *d.query_params)]
    if route.body_field is not None or any(map(_validated, parameters)):
        kinds.append(errors.ValidationFailed)
    return kinds


def document_shapes(router: APIRouter, authenticates: Any) -> None:
    """Add to each route's OpenAPI `responses` the problems its shape can answer (before the
    router is included; doing it again changes nothing)."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            for kind in shape_problems(route, authenticates):
                _add(route.responses.setdefault(kind.status, {}), kind)


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
