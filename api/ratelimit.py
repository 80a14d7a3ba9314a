"""Rate limits: per API key holder (the limit of its role), and for gateway callbacks, which
carry no key, per gateway and client address. Over the limit: 429 `rate-limited` with
`Retry-After`, before the request does anything.

The algorithm is the `limits` package's moving window, counted in this process's memory: each
API process counts on its own, so N processes behind a balancer let through up to N times
the configured rate (a shared storage such as Redis would make it one count).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from kassa.errors import RateLimited
from kassa.settings import Settings
from kassa.statuses import Authenticated, Caller


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_role = {
            Caller.STOREFRONT: parse_many(settings.rate_limit_storefront),
            Caller.SUPPORT: parse_many(settings.rate_limit_support),
        }
        self._callbacks = parse_many(settings.rate_limit_callbacks)

    async def take_caller(self, caller: Authenticated) -> None:
        """One request by this key's holder, or RateLimited (blaming `Authorization`)."""
        await self._take(
            self._per_role[caller.role],
            ("key", str(caller.role), caller.holder),
            f"this API key ({caller.who})",
            field="Authorization",
        )

    async def take_callback(self, gateway: str, client: str) -> None:
        """One callback for `gateway` from this client address, or RateLimited. Per address,
        so that a flood of forged callbacks from one place does not crowd out the
        gateway's own."""
        await self._take(self._callbacks, ("callback", gateway, client), f"{gateway} callbacks")

    async def _take(
        self, items: list[RateLimitItem], key: tuple[str, ...], whose: str, field: str | None = None
    ) -> None:
        for item in items:
            if not await self._limiter.hit(item, *key):
                stats = await self._limiter.get_window_stats(item, *key)
                wait = math.ceil(stats.reset_time - time.time())
                raise RateLimited(
                    f"At most {item} for {whose}; retry in {max(1, wait)} s",
                    retry_after=wait,
                    field=field,
                    limit=str(item),
                )
