"""Reconciliation as a workflow, run by a Temporal Schedule (`kassa-reconcile`, created by
the worker at start; support can trigger it from the UI's Schedules page). Each run is one pass;
its result lists the captures it found, whose refunds are workflows of their own.

A pass goes a page of orders at a time, by order id: first the unfinished orders whose
checkout no longer runs, then the ended orders of the lookback period, then the refunds
reserved but never started. Each page is an activity that retries on its own, so a flaky
gateway slows a pass down instead of failing it; the progress is in the workflow's details
and its `progress` query, and a long pass continues as new to keep its history short. A page
that fails for good fails the pass with a message saying where (support finds it with
`WorkflowType = 'ReconcileWorkflow' AND ExecutionStatus = 'Failed'`); the next scheduled
pass starts over."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from activities.reconcile import ReconcileActivities
    from kassa.contracts import (
        RECONCILE_WORKFLOW,
        CheckoutView,
        ReconcileBatch,
        ReconcileInput,
        ReconcilePhase,
        ReconcileProgress,
        ReconcileReport,
        StorefrontEvent,
    )

# Pages of 50 orders (ReconcileProgress.page) fit well within an activity's timeout, even
# with retries; after 40 pages (pages_per_run) a run continues as new, so its history stays
# bounded however big the shop.
PAGE_RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,  # minutes of a gateway being down; then the pass fails, visibly
)


@workflow.defn(name=RECONCILE_WORKFLOW)
class ReconcileWorkflow:
    def __init__(self) -> None:
        self._progress: ReconcileProgress | None = None

    @workflow.run
    async def run(self, request: ReconcileInput) -> ReconcileReport:
        lookback_hours, progress = request.lookback_hours, request.progress
        if progress is None:
            progress = ReconcileProgress(since=workflow.now() - timedelta(hours=lookback_hours))
        self._progress = progress
        pages = 0
        while progress.phase != ReconcilePhase.DONE:
            if pages >= progress.pages_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(replace(request, progress=progress))
            progress = await self._page(progress)
            self._progress = progress
            pages += 1
            self._tell(progress, lookback_hours)
        resumed = await workflow.execute_activity_method(
            ReconcileActivities.resume_orphaned_refunds,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=PAGE_RETRIES,
            summary="start refunds reserved but never started",
        )
        report = ReconcileReport(
            progress.orders_checked,
            progress.strays_found,
            resumed,
            progress.orders_closed,
            progress.batches,
        )
        workflow.set_current_details(
            f"Done: {report.orders_checked} ended orders compared in {report.batches} pages, "
            f"{len(report.orders_closed)} abandoned orders ended, "
            f"{len(report.strays_found)} stray captures given back, "
            f"{len(report.refunds_resumed)} refunds resumed"
        )
        return report

    @workflow.query
    def progress(self) -> ReconcileProgress | None:
        return self._progress

    async def _page(self, progress: ReconcileProgress) -> ReconcileProgress:
        """One page of the current phase, and the progress after it."""
        batch = ReconcileBatch(
            progress.phase, progress.since, progress.cursor, progress.page, progress.order_id
        )
        ended = progress.phase == ReconcilePhase.ENDED
        step = ReconcileActivities.reconcile_ended if ended else ReconcileActivities.close_abandoned
        try:
            result = await workflow.execute_activity_method(
                step,
                batch,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=replace(PAGE_RETRIES, maximum_attempts=progress.page_attempts),
                summary=f"{progress.phase} orders after {progress.cursor or 'the first'}",
            )
        except ActivityError as err:
            raise ApplicationError(
                f"Reconciliation failed for good on the {progress.phase} orders after "
                f"{progress.cursor or 'the first'} ({progress.orders_checked} ended orders "
                f"compared so far): {err.cause or err}. The next scheduled pass starts over.",
                type="ReconcileFailed",
                non_retryable=True,
            ) from err
        for view in result.ended_views:
            await self._tell_storefront(view)
        if result.orders < progress.page:  # the last page of this phase
            phase = ReconcilePhase.DONE if ended else ReconcilePhase.ENDED
            cursor = None
        else:
            phase, cursor = progress.phase, result.last_order_id
        return replace(
            progress,
            phase=phase,
            cursor=cursor,
            orders_checked=progress.orders_checked + (result.orders if ended else 0),
            strays_found=[*progress.strays_found, *result.strays_found],
            orders_closed=[*progress.orders_closed, *result.orders_closed],
            batches=progress.batches + 1,
        )

    async def _tell_storefront(self, view: CheckoutView) -> None:
        """The webhook the checkout would have sent (same event id): a few tries only, so a
        storefront that is down cannot hold up the pass; the outbox row keeps it."""
        event = StorefrontEvent(
            f"evt_{view.order_id}_{view.status}", f"order.{view.status}", view, workflow.now()
        )
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify_storefront,
                event,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"webhook {event.type}",
            )
        except ActivityError as err:
            workflow.logger.warning("storefront webhook %s abandoned: %s", event.event_id, err)

    def _tell(self, progress: ReconcileProgress, lookback_hours: int) -> None:
        """The pass's progress, as support reads it in the UI."""
        doing = {
            ReconcilePhase.ABANDONED: "ending orders whose checkout stopped",
            ReconcilePhase.ENDED: (
                f"comparing the orders that ended in the last {lookback_hours} h with their "
                "gateways"
            ),
            ReconcilePhase.DONE: "starting refunds reserved but never started",
        }[progress.phase]
        workflow.set_current_details(
            f"Page {progress.batches}: {doing}"
            + (f", after order {progress.cursor}" if progress.cursor else "")
            + f". So far {progress.orders_checked} ended orders compared, "
            f"{len(progress.orders_closed)} abandoned orders ended, "
            f"{len(progress.strays_found)} stray captures given back."
        )
