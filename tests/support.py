"""Helpers the tests share: real servers on loopback, and ways to act as the buyer."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import socket
import sys
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import select
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db.models import LedgerEntry, LedgerTransaction
from gateways.base import NewPayment
from kassa.contracts import CheckoutInput, LineItem

BIN = Path(sys.executable).parent  # the venv's bin: temporal, temporal-test-server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def serving(app, port: int, **tls):
    """Serve an ASGI app over real HTTP on 127.0.0.1:port for the duration of the block;
    over HTTPS with `ssl_certfile=…, ssl_keyfile=…` (uvicorn's)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **tls)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class StorefrontReceiver:
    """Stands in for the storefront's webhook endpoint: verifies and keeps what it gets."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.received: list[dict] = []
        self.app = Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            payload = self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return JSONResponse({"error": "bad signature"}, status_code=400)
        self.received.append({"id": request.headers["webhook-id"], "payload": payload})
        return JSONResponse({"ok": True})

    def for_order(self, order_id: str) -> list[dict]:
        return [r for r in self.received if r["payload"]["data"]["order_id"] == order_id]


def new_checkout(
    amount: int = 9900,
    quantity: int = 1,
    customer_id: str | None = None,
    currency: str = "CNY",
    **overrides,
) -> CheckoutInput:
    return CheckoutInput(
        order_id=overrides.pop("order_id", f"ord_{uuid.uuid4().hex[:12]}"),
        customer_id=customer_id or f"cus_{uuid.uuid4().hex[:8]}",
        items=[LineItem("course-python-101", "Python 101", amount, quantity)],
        currency=currency,
        gateway="sandbox",
        expires_in_seconds=overrides.pop("expires_in_seconds", 900),
        **overrides,
    )


def new_payment(
    notify_url: str = "http://127.0.0.1:9/unused",
    amount: int = 4200,
    expires_in: timedelta = timedelta(minutes=15),
    **overrides,
) -> NewPayment:
    """A payment request as Kassa's adapter sends it to a gateway."""
    return NewPayment(
        merchant_order_id=overrides.pop("merchant_order_id", f"ord_{uuid.uuid4().hex[:10]}"),
        amount=amount,
        currency="CNY",
        description=overrides.pop("description", "1 × Course"),
        expires_at=datetime.now(UTC) + expires_in,
        notify_url=notify_url,
        **overrides,
    )


async def buyer_acts(
    payment_url: str, outcome: str = "succeeded", amount: int | None = None
) -> httpx.Response:
    """Open the payment page like a browser, then press its Pay (or Decline) button;
    `amount` pays another amount than asked."""
    async with httpx.AsyncClient() as http:
        page = await http.get(payment_url)
        page.raise_for_status()
        buttons = re.findall(r'<button name="outcome" value="(\w+)"', page.text)
        assert outcome in buttons, f"no {outcome} button on the page: {page.text}"
        form = {"outcome": outcome, **({"amount": str(amount)} if amount else {})}
        return await http.post(payment_url, data=form)


async def eventually(check, timeout: float = 20.0, interval: float = 0.1):
    """Poll `check` (sync or async) until it returns something truthy; return that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


HISTORIES = Path(__file__).parent / "histories"
RECORD_HISTORIES = "KASSA_RECORD_HISTORIES"  # "all", or history names separated by commas


def histories_to_record() -> set[str]:
    """What KASSA_RECORD_HISTORIES asks for: {"all"}, some names, or nothing."""
    value = os.environ.get(RECORD_HISTORIES, "")
    names = {name.strip() for name in value.split(",") if name.strip()}
    if names & {"1", "true", "yes"}:
        raise ValueError(
            f"{RECORD_HISTORIES}={value}: say which histories to record, by name "
            "(checkout-expired,checkout-declined) or `all` for every missing one"
        )
    return names


async def record_history(handle, name: str, directory: Path = HISTORIES) -> None:
    """Save the workflow's history as `name`.json for the replay tests, when
    KASSA_RECORD_HISTORIES names it (or is `all`).

    Record only for a deliberate, versioned change, as a new file: the checked-in histories
    stand for the checkouts already running in production, which every new version must
    replay. So an existing history is never overwritten: asked for by name, it fails the
    test; with `all`, it is left as it is."""
    wanted = histories_to_record()
    if name not in wanted and "all" not in wanted:
        return
    path = directory / f"{name}.json"
    if path.exists() and name not in wanted:
        return  # `all` records the missing ones
    history = await handle.fetch_history()
    try:
        _write_new(path, history.to_json())
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists and is not overwritten: it stands for checkouts already running. "
            "Record under a new name, or delete it deliberately (git rm) and record again."
        ) from None


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # after `git rm` of every history
    with path.open("x") as file:
        file.write(text)


async def ledger_of(sessions, order_id: str) -> list[tuple[str, str, int]]:
    """The order's ledger entries as (transaction kind, account, amount), in order."""
    async with sessions() as session:
        rows = await session.execute(
            select(LedgerTransaction.kind, LedgerEntry.account, LedgerEntry.amount)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.order_id == order_id)
            .order_by(LedgerEntry.id)
        )
        return [tuple(row) for row in rows]


async def reconcile(stack):
    """One reconciliation pass, as the schedule runs it: the workflow on the stack's worker."""
    from kassa.contracts import ReconcileInput
    from workflows.reconcile import ReconcileWorkflow

    return await stack.temporal.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(lookback_hours=24),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
    )
