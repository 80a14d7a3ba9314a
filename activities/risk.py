"""Risk control (风险控制): a per-order amount limit and a per-customer velocity limit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import orders
from kassa.contracts import CheckoutInput, RiskDecision
from kassa.settings import Settings


class RiskActivities:
    def __init__(self, sessions: async_sessionmaker, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def check_risk(self, checkout: CheckoutInput) -> RiskDecision:
        limit = self._settings.risk_max_order_amount
        if checkout.amount > limit:
            return RiskDecision(False, f"amount {checkout.amount} is over the limit of {limit}")
        window = timedelta(seconds=self._settings.risk_velocity_window_seconds)
        async with self._sessions() as session:
            recent = await orders.count_recent_for_customer(
                session, checkout.customer_id, checkout.order_id, window
            )
        if recent >= self._settings.risk_max_orders_per_customer:
            return RiskDecision(
                False,
                f"customer placed {recent} orders in the last {window}, the limit is "
                f"{self._settings.risk_max_orders_per_customer}",
            )
        return RiskDecision(True)
