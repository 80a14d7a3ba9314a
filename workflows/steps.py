"""How workflows run the two kinds of step they share: short database steps and the
storefront webhook."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from kassa.contracts import StorefrontEvent

DB_STEP = timedelta(seconds=10)
GATEWAY_CALL = timedelta(seconds=15)  # the adapters time out after 10 s
GATEWAY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["GatewayRejected", "UnknownGateway"],
)


def failure_message(err: BaseException) -> str:
    """The innermost message of a step's failure (activity errors wrap their cause)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)


async def db_step(method, arg, summary: str):
    """A short database step: a local activity, no server round trip of its own."""
    return await workflow.execute_local_activity_method(
        method, arg, start_to_close_timeout=DB_STEP, summary=summary
    )


async def notify_storefront(event: StorefrontEvent) -> None:
    """Send the storefront its webhook, retrying for a day. Never fails the workflow: the
    state it reports is already committed, and the outbox row keeps it redeliverable."""
    try:
        await workflow.execute_activity_method(
            NotifyActivities.notify_storefront,
            event,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)),
            summary=f"webhook {event.type}",
        )
    except ActivityError as err:
        workflow.logger.warning("storefront webhook %s abandoned: %s", event.event_id, err)
