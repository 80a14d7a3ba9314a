"""Notifies to the merchant's notify_url, as Alipay sends them: a signed form post, retried on
Alipay's schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h after the first; compressed by the config's
time_factor) with the same notify_id every time, until the body read back is exactly
`success`. Misbehaving as the faults say: dropped, duplicated (the same notify_id twice),
delayed, or followed by a contrary TRADE_CLOSED notify after a payment.
"""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlencode

import httpx
import structlog

from gateways import alipay_protocol as protocol
from gateways.emulators.alipay.keys import AlipayKeys
from gateways.emulators.alipay.state import (
    TRADE_CLOSED,
    TRADE_SUCCESS,
    AlipayConfig,
    AlipayState,
    notify_params,
)

log = structlog.get_logger("alipay-emulator")


class Notifier:
    def __init__(self, config: AlipayConfig, state: AlipayState, keys: AlipayKeys) -> None:
        self.config, self.state, self.keys = config, state, keys
        self.http: httpx.AsyncClient | None = None
        self.senders: set[asyncio.Task] = set()

    def start(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def stop(self) -> None:
        tasks = list(self.senders)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def notify(self, trade: dict, refund: dict | None = None) -> None:
        """Tell the merchant about the trade as it is now (or about one of its refunds)."""
        if not trade["notify_url"]:
            return
        faults = self.state.faults
        notify = self._signed(notify_params(self.keys.app_id, trade, refund))
        if faults.roll("dropped_callbacks", faults.drop_callbacks):
            self._record(notify, 0, "dropped")
            return
        notifies = [notify] * (1 + faults.duplicate_callbacks)
        if faults.duplicate_callbacks:
            faults.count("duplicated_callbacks", faults.duplicate_callbacks)
        if faults.reorder_callbacks and refund is None and trade["status"] == TRADE_SUCCESS:
            faults.count("reordered_callbacks")
            stale = {k: v for k, v in notify.items() if k not in ("sign", "sign_type", "notify_id")}
            notifies.append(self._signed({**stale, "trade_status": TRADE_CLOSED}))
        task = asyncio.create_task(self._deliver(trade["notify_url"], notifies))
        self.senders.add(task)
        task.add_done_callback(self.senders.discard)

    def _signed(self, params: dict[str, str]) -> dict[str, str]:
        params = {**params, "notify_id": params.get("notify_id") or secrets.token_hex(16)}
        if "sign" in params:
            return params
        return protocol.sign_notify(params, self.keys.gateway_private)

    async def _deliver(self, url: str, notifies: list[dict]) -> None:
        await asyncio.sleep(self.state.faults.delay_callbacks)
        for notify in notifies:  # one after the other, each until `success` or given up
            for attempt, wait in enumerate(self.config.notify_schedule, start=1):
                await asyncio.sleep(wait * self.config.time_factor)
                reply = await self._post(url, notify)
                self._record(notify, attempt, reply)
                if reply == protocol.NOTIFY_REPLY:
                    break
            else:
                log.error("notify abandoned", notify_id=notify["notify_id"], url=url)

    async def _post(self, url: str, notify: dict) -> str | None:
        """One attempt: the body the merchant answered (when it answered 200), else None."""
        try:
            response = await self.http.post(
                url,
                content=urlencode(notify).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                },
                timeout=self.config.notify_timeout,
            )
        except httpx.HTTPError as exc:
            log.warning("notify failed", notify_id=notify["notify_id"], error=repr(exc))
            return None
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        return response.content.decode("utf-8", "replace")

    def _record(self, notify: dict, attempt: int, reply: str | None) -> None:
        self.state.notifies.append(
            {
                "notify_id": notify["notify_id"],
                "out_trade_no": notify["out_trade_no"],
                "trade_status": notify["trade_status"],
                "out_biz_no": notify.get("out_biz_no"),
                "attempt": attempt,
                "reply": reply,
                "delivered": reply == protocol.NOTIFY_REPLY,
            }
        )
