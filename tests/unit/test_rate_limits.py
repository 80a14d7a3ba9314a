"""The rate limits themselves (api/ratelimit.py on the `limits` package's moving window, in
memory), without HTTP: who shares a budget, how long to wait, and the settings' notation."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from api.ratelimit import RateLimits
from kassa.errors import RateLimited
from kassa.settings import Settings
from kassa.statuses import Authenticated, Caller

SHOP = Authenticated(Caller.STOREFRONT, "shop")


async def test_the_window_moves_on():
    limits = RateLimits(Settings(rate_limit_storefront="2 per 1 second"))
    await limits.take_caller(SHOP)
    await limits.take_caller(SHOP)
    with pytest.raises(RateLimited) as refused:
        await limits.take_caller(SHOP)
    assert refused.value.headers() == {"Retry-After": "1"}
    assert refused.value.problem()["limit"] == "2 per 1 second"
    await asyncio.sleep(1.1)
    await limits.take_caller(SHOP)  # the first two have left the window


async def test_several_limits_at_once_and_budgets_apart():
    limits = RateLimits(Settings(rate_limit_storefront="5/second;2/minute"))
    for _ in range(2):
        await limits.take_caller(SHOP)
    with pytest.raises(RateLimited) as refused:
        await limits.take_caller(SHOP)
    assert refused.value.problem()["limit"] == "2 per 1 minute"
    assert 1 <= int(refused.value.headers()["Retry-After"]) <= 60
    await limits.take_caller(Authenticated(Caller.STOREFRONT, "another shop"))
    await limits.take_caller(Authenticated(Caller.SUPPORT, "shop"))  # same name, other role


async def test_callbacks_count_per_gateway_and_address():
    limits = RateLimits(Settings(rate_limit_callbacks="1/minute"))
    await limits.take_callback("sandbox", "10.0.0.1")
    await limits.take_callback("sandbox", "10.0.0.2")
    await limits.take_callback("alipay", "10.0.0.1")
    with pytest.raises(RateLimited):
        await limits.take_callback("sandbox", "10.0.0.1")


@pytest.mark.parametrize("value", ["", "fast", "0/second", "50/fortnight", "-1/minute"])
def test_a_rate_limit_setting_must_read_as_one(value):
    with pytest.raises(ValidationError, match="rate_limit_storefront"):
        Settings(rate_limit_storefront=value)
