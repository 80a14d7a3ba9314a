"""How workflows run what they share: short database steps, gateway calls, the storefront
webhook, and waiting for a gateway's word while asking it now and then."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, FailureError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from kassa import search
    from kassa.contracts import StorefrontEvent
    from kassa.search import NeedsAttention

DB_STEP = timedelta(seconds=10)
WEBHOOK_AT_ONCE = timedelta(seconds=5)
GATEWAY_CALL = timedelta(seconds=15)  # the adapters time out after 10 s
# A gateway's refusal (GatewayRejected) is a catalogue error, permanent by itself.
GATEWAY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


def details(doing: str) -> None:
    """What support reads in the UI: what the workflow does, and since when."""
    workflow.set_current_details(f"{doing} (since {workflow.now():%Y-%m-%d %H:%M:%S} UTC)")


def show(*updates: SearchAttributeUpdate) -> None:
    """Upsert the search attributes that change; none changing, no command."""
    shown = workflow.info().typed_search_attributes
    changed = [u for u in updates if shown.get(u.key) != u.value]
    if changed:
        workflow.upsert_search_attributes(changed)


def attention(what: NeedsAttention | None) -> SearchAttributeUpdate:
    """The NeedsAttention update: what needs a human, or None (unset) when nothing does."""
    key = search.NEEDS_ATTENTION
    return key.value_unset() if what is None else key.value_set(str(what))


def resolved(what: NeedsAttention) -> None:
    """Clear NeedsAttention if it still says `what` (another cause may have replaced it)."""
    if workflow.info().typed_search_attributes.get(search.NEEDS_ATTENTION) == what:
        show(attention(None))


def gave_up_in_time(err: ActivityError) -> bool:
    """The activity kept failing until its schedule-to-close time ran out (the server says
    so by the timeout, or by the retry state when the next retry would come too late),
    rather than failing for good."""
    return isinstance(err.cause, ActivityTimeout) or err.retry_state == RetryState.TIMEOUT


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


async def ask_gateway(method, arg, summary: str, within: timedelta, *, local: bool = False):
    """A gateway question whose answer may wait (a status check, a callback's
    confirmation); None when no answer came `within` the time given: an unanswered check
    decides nothing, the next one asks again.

    `local`: run it as a local activity, no server round trip of its own. For the
    confirmation of a callback, on the path from the buyer's payment to the order paid; a
    status check stays a regular activity, whose retries through a gateway outage hold no
    workflow task open."""
    execute = workflow.execute_local_activity_method if local else workflow.execute_activity_method
    try:
        return await execute(
            method,
            arg,
            start_to_close_timeout=GATEWAY_CALL,
            schedule_to_close_timeout=within,
            retry_policy=GATEWAY_RETRY,
            summary=summary,
        )
    except FailureError:  # a local activity's failure comes unwrapped, a regular one's not
        return None


async def wait_for_word(
    decided: Callable[[], bool],
    ask: Callable[[timedelta], Awaitable[None]],
    *,
    first: timedelta,
    most: timedelta | None,
    summary: str,
) -> None:
    """Wait until `decided()` (a callback arrived, a request came, a deadline's own timer
    fired); meanwhile ask the gateway (`ask`, given how long its answer may take) after
    `first`, then twice as long each time up to `most`, so a lost callback cannot lose a
    payment or a refund. `most` None: the first check is the only one."""
    interval: timedelta | None = first
    while not decided():
        try:
            await workflow.wait_condition(decided, timeout=interval, timeout_summary=summary)
        except TimeoutError:
            if decided():
                return
            await ask(interval)
            interval = None if most is None else min(interval * 2, most)


async def notify_storefront(event: StorefrontEvent) -> None:
    """Send the storefront its webhook. Never fails the workflow: the state it reports is
    already committed, and the outbox row keeps it redeliverable.

    Tried once at once as a local activity (most storefronts answer within milliseconds,
    and that costs no server round trip); if that fails, a regular activity retries it for
    a day. The event id is stable, so a storefront that got both drops the second."""
    summary = f"webhook {event.type}"
    try:
        await workflow.execute_local_activity_method(
            NotifyActivities.notify_storefront,
            event,
            start_to_close_timeout=WEBHOOK_AT_ONCE,
            retry_policy=RetryPolicy(maximum_attempts=1),
            summary=summary,
        )
        return
    except FailureError:
        pass  # the storefront is slow or down: its retries are durable
    try:
        await workflow.execute_activity_method(
            NotifyActivities.notify_storefront,
            event,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)),
            summary=summary,
        )
    except ActivityError as err:
        workflow.logger.warning("storefront webhook %s abandoned: %s", event.event_id, err)
