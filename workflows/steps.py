"""How workflows run what they share: short database steps, gateway calls, the storefront
webhook, and waiting for a gateway's word while asking it now and then."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from kassa.contracts import StorefrontEvent

DB_STEP = timedelta(seconds=10)
GATEWAY_CALL = timedelta(seconds=15)  # the adapters time out after 10 s
# A gateway's refusal (GatewayRejected) is a catalogue error, permanent by itself.
GATEWAY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


def details(doing: str) -> None:
    """What support reads in the UI: what the workflow does, and since when."""
    workflow.set_current_details(f"{doing} (since {workflow.now():%Y-%m-%d %H:%M:%S} UTC)")


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


async def ask_gateway(method, arg, summary: str, within: timedelta):
    """A gateway question whose answer may wait (a status check); None when no answer came
    `within` the time given: an unanswered check decides nothing, the next one asks again."""
    try:
        return await workflow.execute_activity_method(
            method,
            arg,
            start_to_close_timeout=GATEWAY_CALL,
            schedule_to_close_timeout=within,
            retry_policy=GATEWAY_RETRY,
            summary=summary,
        )
    except ActivityError:
        return None


async def wait_for_word(
    decided: Callable[[], bool],
    ask: Callable[[timedelta], Awaitable[None]],
    *,
    first: timedelta,
    most: timedelta,
    until: datetime | None = None,
    summary: str,
) -> None:
    """Wait until `decided()` (a callback arrived, a request came) or `until`; meanwhile ask
    the gateway (`ask`, given how long its answer may take) after `first`, then twice as
    long each time up to `most`, so a lost callback cannot lose a payment or a refund."""
    interval = first
    while not decided():
        timeout = interval
        if until is not None:
            left = until - workflow.now()
            if left <= timedelta(0):
                return
            timeout = min(interval, left)
        try:
            await workflow.wait_condition(decided, timeout=timeout, timeout_summary=summary)
        except TimeoutError:
            if until is not None and workflow.now() >= until:
                return
            await ask(interval)
            interval = min(interval * 2, most)


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
