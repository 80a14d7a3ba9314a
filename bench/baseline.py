"""The baselines: what a straightforward Temporal design reaches on this machine.

- `NaiveCheckout`: the checkout of issue #11 with no business logic: create order, create
  payment, wait for the "paid" signal, mark paid, grant, notify; every step a regular
  activity that returns at once.
- `BareOpen`: update-with-start of a workflow whose update runs one activity and returns its
  result (what the storefront's wait for a payment URL costs at the least).

Served by `python -m bench.baseline` (started by bench/stack.py) on its own task queue of the
same Temporal server as Kassa, with the SDK's default worker options and data converter.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

TASK_QUEUE = "bench-baseline"
STEP = {"start_to_close_timeout": timedelta(seconds=30)}


@activity.defn
async def create_order(order_id: str) -> str:
    return order_id


@activity.defn
async def create_payment(order_id: str) -> str:
    return f"http://127.0.0.1/pay/{order_id}"


@activity.defn
async def mark_paid(order_id: str) -> None:
    return None


@activity.defn
async def grant(order_id: str) -> None:
    return None


@activity.defn
async def notify(order_id: str) -> None:
    return None


@workflow.defn
class NaiveCheckout:
    def __init__(self) -> None:
        self.paid = False

    @workflow.signal
    def pay(self) -> None:
        self.paid = True

    @workflow.run
    async def run(self, order_id: str) -> str:
        await workflow.execute_activity(create_order, order_id, **STEP)
        await workflow.execute_activity(create_payment, order_id, **STEP)
        await workflow.wait_condition(lambda: self.paid)
        await workflow.execute_activity(mark_paid, order_id, **STEP)
        await workflow.execute_activity(grant, order_id, **STEP)
        await workflow.execute_activity(notify, order_id, **STEP)
        return "fulfilled"


@workflow.defn
class BareOpen:
    def __init__(self) -> None:
        self.opened = False

    @workflow.update
    async def open(self, order_id: str) -> str:
        url = await workflow.execute_activity(create_payment, order_id, **STEP)
        self.opened = True
        return url

    @workflow.run
    async def run(self, order_id: str) -> None:
        await workflow.wait_condition(lambda: self.opened)


async def main() -> None:
    client = await Client.connect(os.environ["KASSA_TEMPORAL_ADDRESS"])
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[NaiveCheckout, BareOpen],
        activities=[create_order, create_payment, mark_paid, grant, notify],
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
