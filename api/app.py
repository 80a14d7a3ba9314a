"""The FastAPI app: storefront API, gateway callbacks, health. `create_app` is the factory;
the lifespan builds the engine, the Temporal client and the gateway adapters."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import prometheus_client
from fastapi import Depends, FastAPI, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from temporalio.client import Client

from api import openapi, problems
from api.deps import authenticates, support_only
from api.limits import BodySizeLimit
from api.ratelimit import RateLimits
from api.routers import checkouts, orders, refunds, support, webhooks
from db.engine import make_engine, make_sessionmaker
from gateways import build_gateways
from kassa.logs import configure_structlog
from kassa.settings import Settings, get_settings
from kassa.telemetry import configure_tracing
from orchestration import temporal


def create_app(settings: Settings | None = None, temporal_client: Client | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_tracing(settings, "kassa-api")
    configure_structlog()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url)
        async with httpx.AsyncClient() as http:
            HTTPXClientInstrumentor.instrument_client(http)
            app.state.settings = settings
            app.state.sessions = make_sessionmaker(engine)
            app.state.temporal = temporal_client or await temporal.connect(settings)
            app.state.gateways = build_gateways(settings, http)
            app.state.rate_limits = RateLimits(settings)  # in memory: this process's own
            yield
        await engine.dispose()

    app = FastAPI(
        title="Kassa",
        summary="Checkouts for paid content, each one a durable Temporal workflow.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    problems.install(app)
    for routes in (checkouts, orders, refunds, support, webhooks):
        problems.document_shapes(routes.router, authenticates)
        app.include_router(routes.router)

    @app.get("/healthz", tags=["health"], operation_id="health")
    async def healthz() -> dict:
        async with app.state.sessions() as session:
            await session.execute(text("select 1"))
        return {"status": "ok"}

    # Kassa's series (kassa/metrics.py) as this process counted them (the checkouts are
    # counted by the workers, on their own ports). Support's key: the API's port is public,
    # and checkout volumes by gateway are nobody else's business.
    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(support_only)])
    def metrics() -> Response:
        return Response(prometheus_client.generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # A span per request, continued into the workflow by the Temporal client's interceptor.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")
    openapi.install(app, settings)
    return app
