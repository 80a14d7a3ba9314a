"""The worker: registers the checkout workflow and its activities on the task queue. Wiring
only; engines and clients are built here at start-up, never at import."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

import httpx
import prometheus_client
import structlog
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.entitlements import EntitlementActivities
from activities.invoices import InvoiceActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.reconcile import ReconcileActivities
from activities.refunds import RefundActivities
from activities.risk import RiskActivities
from db import watch
from db.engine import make_engine, make_sessionmaker
from gateways import build_gateways
from kassa import metrics
from kassa.errors import DatabaseRefused
from kassa.logs import configure_logging
from kassa.settings import Settings, get_settings
from kassa.telemetry import configure_tracing
from orchestration import temporal
from workflows.checkout import CheckoutWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.redeliver import RedeliverWebhookWorkflow
from workflows.refund import RefundWorkflow

WORKFLOWS = [CheckoutWorkflow, RefundWorkflow, ReconcileWorkflow, RedeliverWebhookWorkflow]
# The sandbox guards each workflow's own module (checkout, refund, reconcile, redeliver),
# loaded anew for every run; the helpers they share are loaded once. That cut a cached
# checkout's memory from about 1.6 MB to 0.3 MB (docs/performance.md).
SHARED_WORKFLOW_HELPERS = [
    "workflows.collect",
    "workflows.fulfilment",
    "workflows.payment",
    "workflows.refunding",
    "workflows.saga",
    "workflows.steps",
]
UNGUARDED = UnsandboxedWorkflowRunner()
GUARDED = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*SHARED_WORKFLOW_HELPERS)
)


# SQLSTATE classes: data exception, integrity constraint violation. Not 42 (undefined column
# or table): that is a worker running before its migration, which retrying outlasts.
REFUSALS = {"22", "23"}


class DatabaseRefusals(Interceptor):
    """The database refusing the data itself (too long, constraint violated) is
    permanent: fail the activity for good, so the workflow compensates or fails loudly,
    instead of retrying forever. Lost connections and timeouts still retry."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RefusalsArePermanent(next)


class _RefusalsArePermanent(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput):
        try:
            return await super().execute_activity(input)
        except DBAPIError as err:
            sqlstate = str(getattr(err.orig, "sqlstate", None) or "")
            if sqlstate[:2] not in REFUSALS:
                raise
            raise DatabaseRefused(
                f"the database refused it (SQLSTATE {sqlstate}): {err.orig}"
            ) from err


class LogContext(Interceptor):
    """Our log lines inside an activity carry its workflow id and order id (structlog's
    context variables), so one checkout's lines are found together (with the trace id)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindsContext(next)


class _BindsContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput):
        info = activity.info()
        context = {"workflow_id": info.workflow_id, "activity": info.activity_type}
        order_id = next((a.order_id for a in input.args if hasattr(a, "order_id")), None)
        if order_id is not None:
            context["order_id"] = order_id
        with structlog.contextvars.bound_contextvars(**context):
            return await super().execute_activity(input)


def activities_of(*objects) -> list[Callable]:
    """Every public async method of these objects, each an activity (the Worker refuses a
    method without @activity.defn): a new activity is registered by being defined."""
    return [
        method
        for obj in objects
        for name in sorted(vars(type(obj)))
        if not name.startswith("_") and inspect.iscoroutinefunction(method := getattr(obj, name))
    ]


def build_worker(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker,
    http: httpx.AsyncClient,
    task_queue: str | None = None,
    replace: Mapping[str, Callable] | None = None,
) -> Worker:
    """`replace` swaps activities by name (tests inject failures this way)."""
    gateways = build_gateways(settings, http)
    activities = activities_of(
        OrderActivities(sessions, settings),
        RiskActivities(sessions, settings),
        PaymentActivities(gateways, sessions, settings),
        LedgerActivities(sessions),
        EntitlementActivities(sessions),
        InvoiceActivities(sessions),
        RefundActivities(gateways, sessions),
        NotifyActivities(http, sessions, settings),
        ReconcileActivities(client, gateways, sessions, settings),
    )
    replace = replace or {}
    return Worker(
        client,
        graceful_shutdown_timeout=timedelta(seconds=5),
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=[replace.get(a.__name__, a) for a in activities],
        max_cached_workflows=settings.worker_max_cached_workflows,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_local_activities=settings.worker_max_concurrent_local_activities,
        sticky_queue_schedule_to_start_timeout=timedelta(
            seconds=settings.worker_sticky_timeout_seconds
        ),
        workflow_runner=GUARDED if settings.worker_workflow_sandbox == "guarded" else UNGUARDED,
        # Tracing comes with the client (orchestration/temporal.py).
        interceptors=[LogContext(), DatabaseRefusals()],
    )


@asynccontextmanager
async def running_worker(
    client: Client,
    settings: Settings,
    task_queue: str | None = None,
    replace: Mapping[str, Callable] | None = None,
):
    """A worker with its own engine and HTTP client, for as long as the block runs."""
    engine = make_engine(settings.database_url)
    async with httpx.AsyncClient() as http:
        HTTPXClientInstrumentor.instrument_client(http)  # spans, and traceparent to gateways
        worker = build_worker(
            client, settings, make_sessionmaker(engine), http, task_queue, replace
        )
        async with worker:
            yield worker
    await engine.dispose()


WATCH_EVERY_SECONDS = 60.0


async def watch_waiting(sessions: async_sessionmaker, every: float = WATCH_EVERY_SECONDS):
    """Keep the gauges of held payments and stuck checkouts current, from the database."""
    while True:
        try:
            now = datetime.now(UTC)
            async with sessions() as session:
                waiting = await watch.waiting(session, now)
            metrics.HELD_WAITING.set(waiting.held)
            since = waiting.held_since
            metrics.HELD_OLDEST.set((now - since).total_seconds() if since else 0)
            metrics.STUCK_CHECKOUTS.set(waiting.stuck)
        except Exception:  # the database away a while: the next round tries again
            logging.getLogger("kassa.watch").warning("could not sample waiting orders")
        await asyncio.sleep(every)


async def main() -> None:
    settings = get_settings()
    configure_logging()
    configure_tracing(settings, "kassa-worker")
    if settings.worker_metrics_port:
        prometheus_client.start_http_server(settings.worker_metrics_port, settings.metrics_host)
    client = await temporal.connect(settings, temporal.worker_runtime(settings))
    # The workers run reconciliation, so they make sure its schedule exists (in any
    # deployment, not only `kassa run`); one made before, or paused by support, stays.
    await temporal.ensure_reconcile_schedule(client, settings)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    engine = make_engine(settings.database_url)
    watching = asyncio.create_task(watch_waiting(make_sessionmaker(engine)))
    async with running_worker(client, settings):
        await stop.wait()  # leaving the block shuts the worker down gracefully
    watching.cancel()
    with suppress(asyncio.CancelledError):
        await watching
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
