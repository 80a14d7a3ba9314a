"""The per-order amount limit is per currency, in major units scaled by the exponent."""

import pytest

from activities.risk import RiskActivities, amount_limit
from kassa.settings import Settings
from tests.support import new_checkout

SETTINGS = Settings(
    risk_max_order_major=50_000, risk_max_order_major_by_currency={"JPY": 1_000_000}
)


@pytest.mark.parametrize(
    ("currency", "limit"),
    [
        ("CNY", 50_000_00),  # 2 decimals: the default in fen
        ("JPY", 1_000_000),  # 0 decimals, its own limit: yen are minor units too
        ("KWD", 50_000_000),  # 3 decimals: fils, not 50_000_00
    ],
)
def test_the_limit_follows_the_currency(currency, limit):
    assert amount_limit(SETTINGS, currency) == limit


@pytest.mark.parametrize(
    ("currency", "allowed", "refused"),
    [
        ("JPY", 1_000_000, 1_000_001),  # ¥1,000,000 passes, one yen more does not
        ("KWD", 50_000_000, 50_000_001),  # 50,000.000 KWD passes, one fils more does not
    ],
)
async def test_the_risk_check_uses_the_currency_limit(currency, allowed, refused):
    risk = RiskActivities(sessions=None, settings=SETTINGS)  # refused before any query
    decision = await risk.check_risk(new_checkout(amount=refused, currency=currency))
    assert not decision.approved and "over the limit" in decision.reason
    assert currency in decision.reason
    assert amount_limit(SETTINGS, currency) == allowed
