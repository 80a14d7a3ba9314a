"""Send a storefront webhook again from the outbox, on support's request (id
`redeliver-<event id>-<request>`): the same event id and body, so a storefront that has it
drops the repeat. Retried like the first delivery, for a day."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from kassa.contracts import REDELIVER_WORKFLOW, Redelivery


@workflow.defn(name=REDELIVER_WORKFLOW)
class RedeliverWebhookWorkflow:
    @workflow.run
    async def run(self, redelivery: Redelivery) -> bool:
        workflow.set_current_details(f"Redelivering webhook {redelivery.event_id}")
        return await workflow.execute_activity_method(
            NotifyActivities.redeliver_webhook,
            redelivery.event_id,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)),
            summary=f"webhook {redelivery.event_id}",
        )
