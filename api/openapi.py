"""The published contract, per app: what the routes and models say, plus what depends on
the deployment's settings (the gateways it has, the checkout bounds) and the problem
details' schema. (The problems each route answers for its shape are added to its router by
`problems.document_shapes`.)

The server checks each of these itself (with its own messages and `field`s); the schema
says the same, so that a client generated from it, or schemathesis, sends what is accepted.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from api import problems
from gateways import build_gateways
from kassa.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi  # FastAPI's own, which caches its result in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _complete(generate(), settings, _gateways(app, settings))
        return app.openapi_schema

    app.openapi = openapi


def _gateways(app: FastAPI, settings: Settings) -> dict[str, frozenset[str] | None]:
    """The gateways the running app accepts (its lifespan built them; before it runs, the
    ones it will build) and the currencies each takes (None: any)."""
    gateways = getattr(app.state, "gateways", None)
    if gateways is None:
        gateways = build_gateways(settings, httpx.AsyncClient())
    return {name: gateways[name].currencies for name in sorted(gateways)}


def _complete(
    schema: dict[str, Any], settings: Settings, currencies: dict[str, frozenset[str] | None]
) -> None:
    gateways = list(currencies)
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    models["Problem"] = problems.PROBLEM_SCHEMA

    checkout, item = models["CheckoutIn"]["properties"], models["LineItemIn"]["properties"]
    checkout["gateway"]["enum"] = gateways
    # A gateway that takes some currencies only: the body is one of these shapes.
    if any(taken is not None for taken in currencies.values()):
        models["CheckoutIn"]["anyOf"] = [
            {"properties": {"gateway": {"const": name}}}
            if taken is None
            else {"properties": {"gateway": {"const": name}, "currency": {"enum": sorted(taken)}}}
            for name, taken in currencies.items()
        ]
    checkout["items"]["maxItems"] = settings.max_items
    item["quantity"]["maximum"] = settings.max_quantity
    item["unit_amount"]["maximum"] = settings.max_unit_amount
    expires_in = checkout["expires_in_seconds"]
    expires_in["description"] += f" {settings.expires_in_default} seconds"
    for branch in expires_in["anyOf"]:
        if branch.get("type") == "integer":
            branch["minimum"], branch["maximum"] = settings.expires_in_min, settings.expires_in_max

    for parameter in schema["paths"]["/v1/webhooks/{gateway}"]["post"]["parameters"]:
        if parameter["name"] == "gateway":
            parameter["schema"]["enum"] = gateways

    # FastAPI guesses a 422 of its own shape for any route with parameters; ours are
    # problems, documented where they can happen (problems.document_shapes).
    for operations in schema["paths"].values():
        for operation in operations.values():
            guessed = operation["responses"].get("422", {}).get("content", {})
            if "application/json" in guessed:
                del operation["responses"]["422"]
    models.pop("HTTPValidationError", None)
    models.pop("ValidationError", None)
