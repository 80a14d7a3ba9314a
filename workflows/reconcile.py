"""Reconciliation as a workflow, run by a Temporal Schedule (`kassa-reconcile`, created by
the worker at start; support can trigger it from the UI's Schedules page). Each run is one pass;
its result lists the captures it found, whose refunds are workflows of their own."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from kassa.contracts import RECONCILE_WORKFLOW, ReconcileInput, ReconcileReport


@workflow.defn(name=RECONCILE_WORKFLOW)
class ReconcileWorkflow:
    @workflow.run
    async def run(self, request: ReconcileInput | int) -> ReconcileReport:
        # A bare number: the input of a schedule created before ReconcileInput existed.
        lookback_hours = request if isinstance(request, int) else request.lookback_hours
        workflow.set_current_details(
            f"Comparing the orders that ended in the last {lookback_hours} h with their gateways"
        )
        report = await workflow.execute_activity_method(
            ReconcileActivities.reconcile,
            lookback_hours,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),  # the next scheduled pass tries again
            summary="compare captures at the gateways with the orders",
        )
        workflow.set_current_details(
            f"Done: {report.orders_checked} orders, {len(report.strays_found)} stray captures, "
            f"{len(report.refunds_resumed)} refunds resumed"
        )
        return report
