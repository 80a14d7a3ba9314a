"""Risk control (风险控制): a per-order amount limit and a per-customer velocity limit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import orders
from kassa.contracts import CheckoutInput, RiskDecision
from kassa.money import currency_exponent, format_amount
from kassa.settings import Settings


def amount_limit(settings: Settings, currency: str) -> int:
    """The per-order limit in `currency`'s minor units: its major-unit limit (the currency's
    own, else the default) scaled by its exponent (JPY 0, CNY 2, KWD 3)."""
    major = settings.risk_max_order_major_by_currency.get(currency, settings.risk_max_order_major)
    return int(Decimal(major).scaleb(currency_exponent(currency)))


class RiskActivities:
    def __init__(self, sessions: async_sessionmaker, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def check_risk(self, checkout: CheckoutInput) -> RiskDecision:
        limit = amount_limit(self._settings, checkout.currency)
        if checkout.amount > limit:
            return RiskDecision(
                False,
                f"amount {format_amount(checkout.amount, checkout.currency)} is over the limit "
                f"of {format_amount(limit, checkout.currency)}",
            )
        # Count and approve in one transaction, one check per customer at a time: parallel
        # checkouts of one customer cannot all see room for themselves. Each order exists
        # already (create_order ran first), so only approvals are counted, never orders
        # still waiting for their own check.
        window = timedelta(seconds=self._settings.risk_velocity_window_seconds)
        most = self._settings.risk_max_orders_per_customer
        async with self._sessions.begin() as session:
            await orders.lock_customer_for_risk(session, checkout.customer_id)
            if await orders.risk_approved(session, checkout.order_id):
                return RiskDecision(True)  # a retry: the first decision stands
            recent = await orders.count_approved_for_customer(
                session, checkout.customer_id, checkout.order_id, window
            )
            if recent >= most:
                return RiskDecision(
                    False,
                    f"customer placed {recent} orders in the last {window}, the limit is {most}",
                )
            await orders.mark_risk_approved(session, checkout.order_id)
        return RiskDecision(True)
