"""The worker: registers the checkout workflow and its activities on the task queue. Wiring
only; engines and clients are built here at start-up, never at import."""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.entitlements import EntitlementActivities
from activities.invoices import InvoiceActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.reconcile import ReconcileActivities
from activities.refunds import RefundActivities
from activities.risk import RiskActivities
from db.engine import make_engine, make_sessionmaker
from gateways import build_gateways
from kassa.errors import DatabaseRefused
from kassa.logs import configure_logging
from kassa.settings import Settings, get_settings
from orchestration import temporal
from workflows.checkout import CheckoutWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.redeliver import RedeliverWebhookWorkflow
from workflows.refund import RefundWorkflow

WORKFLOWS = [CheckoutWorkflow, RefundWorkflow, ReconcileWorkflow, RedeliverWebhookWorkflow]


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
        OrderActivities(sessions),
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
        interceptors=[DatabaseRefusals()],
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
        worker = build_worker(
            client, settings, make_sessionmaker(engine), http, task_queue, replace
        )
        async with worker:
            yield worker
    await engine.dispose()


async def main() -> None:
    settings = get_settings()
    configure_logging()
    client = await temporal.connect(settings)
    # The workers run reconciliation, so they make sure its schedule exists (in any
    # deployment, not only `kassa run`); one made before, or paused by support, stays.
    await temporal.ensure_reconcile_schedule(client, settings)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with running_worker(client, settings):
        await stop.wait()  # leaving the block shuts the worker down gracefully


if __name__ == "__main__":
    asyncio.run(main())
