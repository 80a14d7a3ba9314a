"""A worker that dies like a SIGKILL (os._exit) right after it has marked an order fulfilled:
the local activities of that workflow task have committed, the task itself never completes.
Settings from the environment, like `python -m worker`.

    python -m tests.dying_worker
"""

from __future__ import annotations

import asyncio
import os

from temporalio import activity

from activities.orders import OrderActivities
from db.engine import make_engine, make_sessionmaker
from kassa.contracts import StatusChange
from kassa.settings import get_settings
from kassa.statuses import OrderStatus
from orchestration import temporal
from worker import running_worker


async def main() -> None:
    settings = get_settings()
    orders = OrderActivities(make_sessionmaker(make_engine(settings.database_url)), settings)

    @activity.defn(name="set_status")
    async def set_status_then_die(change: StatusChange) -> None:
        await orders.set_status(change)
        if change.status == OrderStatus.FULFILLED:
            os._exit(9)

    client = await temporal.connect(settings)
    async with running_worker(client, settings, replace={"set_status": set_status_then_die}):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
