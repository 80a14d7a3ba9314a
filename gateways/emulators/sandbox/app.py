"""The sandbox gateway's app: its state, its outbox and its three sets of routes."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from gateways.emulators import refuse_outside_development
from gateways.emulators.faults import Faults
from gateways.emulators.sandbox.api import merchant_routes
from gateways.emulators.sandbox.controls import emulator_routes
from gateways.emulators.sandbox.outbox import Outbox
from gateways.emulators.sandbox.page import buyer_routes
from gateways.emulators.sandbox.state import SandboxConfig, SandboxState


def create_app(config: SandboxConfig) -> FastAPI:
    refuse_outside_development()
    state = SandboxState.load(config.state_file)
    if config.faults is not None:
        state.behaviour.faults = config.faults
    outbox = Outbox(config, state)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient(timeout=10) as http:
            outbox.start(http)
            yield
            await outbox.stop()

    app = FastAPI(title="Kassa sandbox gateway", lifespan=lifespan)
    app.state.sandbox = state

    @app.middleware("http")
    async def _count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")  # set by the router once a route matched
        path = getattr(route, "path", None) or "(no route)"
        state.calls[f"{request.method} {path}"] += 1
        return response

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"code": str(exc.detail)}
        return JSONResponse(detail, status_code=exc.status_code)

    app.include_router(merchant_routes(config, state, outbox))
    app.include_router(emulator_routes(config, state, outbox))
    app.include_router(buyer_routes(state, outbox))
    return app


def app_from_settings() -> FastAPI:
    """The emulator as the dev stack runs it, configured by Kassa's settings."""
    from kassa.settings import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return create_app(
        SandboxConfig(
            public_url=settings.sandbox_url,
            api_key=settings.sandbox_api_key.get_secret_value(),
            webhook_secret=settings.sandbox_webhook_secrets[0].get_secret_value(),
            state_file=settings.data_dir / "sandbox.json",
            faults=Faults(**settings.sandbox_faults),
        )
    )
