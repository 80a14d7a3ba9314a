"""`make screenshots`: the pictures in docs/support.md, taken of the real Temporal Web UI.

Starts the embedded stack the way `make run` does (`kassa run`), on free ports with a
throwaway data folder; drives a scripted mix of checkouts through the public API and the
sandbox emulator's buyer and behaviour controls (paid, waiting, declined, cancelled,
refunded, held, a refund the gateway fails, a late payment); then opens the dev server's
Web UI in headless Chromium (Debian's `chromium`, driven by Playwright, no browser
download) and saves PNGs under docs/support/. It generates documentation: not part of
`make test` (tests/unit/test_screenshots.py checks the mix and the query).

    apt-get install -y chromium
    make screenshots                              # docs/support/*.png
    .venv/bin/python -m tooling.screenshots --keep   # and leave the stack up to look around
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from kassa.ids import checkout_workflow_id, refund_workflow_id
from kassa.search import DECLINED_MAY_RETRY, NeedsAttention
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "support"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's own connections (updates, sync, field
# trials) are refused on a closed network and it stalls; a fresh profile each run.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 2240, "height": 900}  # wide enough for the added columns
NAMESPACE = "default"

# The saved view of docs/support.md: everything support must act on. The workflows set
# NeedsAttention to why (kassa/search.py) and unset it when nothing needs a human; an unset
# attribute is NULL to visibility. A checkout stopped by hand from Temporal sets nothing:
# `kassa support stuck` finds those from the database.
NEEDS_SUPPORT_VIEW = "Needs support"
NEEDS_SUPPORT = "NeedsAttention IS NOT NULL"
ALL_CHECKOUTS = "WorkflowType = 'CheckoutWorkflow'"
# A stray capture's refund says its kind in RefundKind.
STRAYS = "RefundKind IN ('late_payment', 'double_payment', 'amount_mismatch', 'overpayment')"
# The columns support adds to the workflows table (the list's column settings), and those
# it removes to make room (workflow ids say checkout- or refund-; the list is newest first).
COLUMNS_REMOVED = ("Run ID", "Type", "Start", "End")
COLUMNS_ADDED = (
    *("NeedsAttention", "PaymentStatus", "RefundStatus", "RefundKind", "OrderId", "CustomerId"),
    *("AmountMinor", "Currency", "PaymentExpiresAt"),
)


@dataclass(frozen=True)
class Purchase:
    """One checkout of the mix: what the buyer (and then the storefront) does, and how the
    order must end up before the pictures are taken."""

    order_id: str
    customer_id: str
    amount: int  # minor units, CNY
    title: str
    buyer: str  # "pay", "nothing", "decline", "cancel", "pay_other", "pay_late"
    paid_amount: int | None = None  # "pay_other": what the buyer really pays
    refund: str | None = None  # then: "refund" (succeeds) or "failed_refund" (gateway fails it)
    expires_in_seconds: int = 900
    expect: str = "fulfilled"  # the order's status once the mix has settled
    expect_reason: str | None = None
    shows: str = ""  # what it is in the pictures

    @property
    def workflow_id(self) -> str:
        return checkout_workflow_id(self.order_id)

    @property
    def payment_statuses(self) -> tuple[str, ...]:
        """The checkout's PaymentStatus in Temporal: the order's status when the checkout
        ended (a refund afterwards is a workflow of its own and does not change it)."""
        if self.refund:
            return ("fulfilled",)
        if self.expect_reason == DECLINED_MAY_RETRY:
            return (DECLINED_MAY_RETRY,)  # the checkout says more than the order's status
        return (self.expect,)


MIX: tuple[Purchase, ...] = (
    Purchase("shots-1001", "cus_alice", 19900, "Python 101", "pay", shows="paid and fulfilled"),
    Purchase(
        "shots-1002",
        "cus_bob",
        4900,
        "SQL in a week",
        "nothing",
        expect="awaiting_payment",
        shows="waiting for the buyer",
    ),
    Purchase(
        "shots-1003",
        "cus_carol",
        9900,
        "Go 101",
        "decline",
        expect="awaiting_payment",
        expect_reason=DECLINED_MAY_RETRY,
        shows="declined; the buyer may try again",
    ),
    Purchase(
        "shots-1004",
        "cus_dave",
        2900,
        "Regex cheatsheet",
        "cancel",
        expect="cancelled",
        shows="cancelled by support, with a reason: one audit row",
    ),
    Purchase(
        "shots-1005",
        "cus_erin",
        19900,
        "Rust 101",
        "pay",
        refund="refund",
        expect="refunded",
        shows="paid, then refunded in full",
    ),
    Purchase(
        "shots-1006",
        "cus_frank",
        9900,
        "Kotlin 101",
        "pay_other",
        paid_amount=12900,
        expect="on_hold",
        expect_reason="amount_mismatch",
        shows="paid another amount: held for support",
    ),
    Purchase(
        "shots-1007",
        "cus_grace",
        4900,
        "Docker basics",
        "pay",
        refund="failed_refund",
        shows="fulfilled; its refund failed at the gateway",
    ),
    Purchase(
        "shots-1008",
        "cus_heidi",
        2900,
        "Vim golf",
        "pay_late",
        expires_in_seconds=5,
        expect="expired",
        shows="expired, then paid late: the capture is refunded as a stray",
    ),
)
# The stack lets a payment window be this short, for the late payment.
MIN_WINDOW_SECONDS = min(p.expires_in_seconds for p in MIX)


@dataclass
class Stack:
    """`kassa run` in a subprocess on free ports; its URLs."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.ports['sandbox']}"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports['temporal_ui']}"

    @property
    def temporal(self) -> str:
        return f"127.0.0.1:{self.ports['temporal']}"

    @property
    def log(self) -> Path:
        return self.data_dir / "kassa-run.log"

    def env(self) -> dict[str, str]:
        # Only this run's settings: none of the caller's KASSA_* (an external database or
        # Temporal, production mode) may leak into the pictures.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KASSA_") and k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")
        }
        p = self.ports
        return env | {
            "KASSA_DATA_DIR": str(self.data_dir),
            "KASSA_API_PORT": str(p["api"]),
            "KASSA_PUBLIC_API_URL": self.api,
            "KASSA_SANDBOX_PORT": str(p["sandbox"]),
            "KASSA_SANDBOX_URL": self.sandbox,
            "KASSA_ALIPAY_PORT": str(p["alipay"]),
            "KASSA_ALIPAY_GATEWAY_URL": f"http://127.0.0.1:{p['alipay']}/gateway.do",
            "KASSA_TEMPORAL_PORT": str(p["temporal"]),
            "KASSA_TEMPORAL_UI_PORT": str(p["temporal_ui"]),
            "KASSA_EXPIRES_IN_MIN": str(MIN_WINDOW_SECONDS),
        }

    def start(self, seconds: float = 180) -> None:
        for name in ("api", "sandbox", "alipay", "temporal", "temporal_ui"):
            self.ports[name] = _free_port()
        kassa = Path(sys.executable).parent / "kassa"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(kassa), "run"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is ours; `stop` stops it in order
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"kassa run exited ({self.proc.returncode}):\n{self._tail()}")
            try:
                if httpx.get(f"{self.api}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"kassa run did not answer within {seconds:.0f}s:\n{self._tail()}")

    def stop(self) -> None:
        # SIGINT is Ctrl-C: `kassa run` stops its parts in reverse order, PostgreSQL last.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(what: str, check: Callable[[], Awaitable], seconds: float = 90):
    """Ask `check` until it returns something truthy; that is returned."""
    deadline = time.monotonic() + seconds
    while True:
        if result := await check():
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        await asyncio.sleep(0.5)


# ---- the mix ------------------------------------------------------------------------------


class Shop:
    """The storefront, the buyers and support, over HTTP, as the README shows them."""

    def __init__(self, http: httpx.AsyncClient, stack: Stack) -> None:
        self.http, self.stack = http, stack
        self.storefront = {"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"}
        self.support = {"Authorization": f"Bearer {DEV_SUPPORT_KEY}"}
        self.failed_refund_id: str | None = None

    async def call(self, method: str, url: str, **kwargs) -> dict:
        answer = await self.http.request(method, url, **kwargs)
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {url}: {answer.status_code} {answer.text}")
        return answer.json()

    async def checkout(self, p: Purchase) -> dict:
        body = {
            "order_id": p.order_id,
            "customer_id": p.customer_id,
            "currency": "CNY",
            "gateway": "sandbox",
            "expires_in_seconds": p.expires_in_seconds,
            "items": [
                {"sku": p.order_id, "title": p.title, "unit_amount": p.amount, "quantity": 1}
            ],
        }
        headers = self.storefront | {"Idempotency-Key": f"{p.order_id}-checkout"}
        return await self.call("POST", f"{self.stack.api}/v1/checkouts", json=body, headers=headers)

    async def order(self, order_id: str) -> dict:
        url = f"{self.stack.api}/v1/orders/{order_id}"
        return await self.call("GET", url, headers=self.storefront)

    async def settled(self, order_id: str, status: str, reason: str | None = None) -> dict:
        async def check():
            order = await self.order(order_id)
            ok = order["status"] == status and (reason is None or order["reason_code"] == reason)
            return order if ok else None

        return await until(f"order {order_id} to be {status}", check)

    async def buyer(self, payment_url: str, outcome: str, amount: int | None = None) -> None:
        body = {"payment": payment_url, "outcome": outcome}
        if amount is not None:
            body["amount"] = amount  # the sandbox page's hidden amount field
        await self.call("POST", f"{self.stack.sandbox}/_emulator/buyer", json=body)

    async def gateway_behaviour(self, refunds_settle: str) -> None:
        body = {"refunds_settle": refunds_settle}
        await self.call("PUT", f"{self.stack.sandbox}/_emulator/behaviour", json=body)

    async def refund(self, order_id: str, reason: str) -> dict:
        headers = self.storefront | {"Idempotency-Key": f"{order_id}-refund"}
        url = f"{self.stack.api}/v1/orders/{order_id}/refunds"
        return await self.call("POST", url, json={"reason": reason}, headers=headers)

    async def play(self, p: Purchase) -> None:
        started = await self.checkout(p)
        page = started["payment"]["payment_url"]
        match p.buyer:
            case "pay":
                await self.buyer(page, "succeeded")
            case "decline":
                await self.buyer(page, "declined")
            case "pay_other":
                await self.buyer(page, "succeeded", p.paid_amount)
            case "cancel":  # by support: the audit picture shows it
                url = f"{self.stack.api}/v1/orders/{p.order_id}/cancel"
                body = {"reason": "buyer phoned: ordered the wrong course"}
                await self.call("POST", url, json=body, headers=self.support)
            case "pay_late":
                await self.settled(p.order_id, "expired")
                payment_id = page.rstrip("/").rpartition("/")[2]
                url = f"{self.stack.sandbox}/_emulator/payments/{payment_id}/late-capture"
                await self.call("POST", url)
            case "nothing":
                pass
        if p.refund is not None:
            await self.settled(p.order_id, "fulfilled")
            if p.refund == "refund":
                await self.refund(p.order_id, "bought by mistake")
            else:
                await self.refund_that_fails(p.order_id)
        await self.settled(p.order_id, p.expect, p.expect_reason)

    async def refund_that_fails(self, order_id: str) -> None:
        """The gateway accepts the refund for processing, then cannot pay it out."""
        await self.gateway_behaviour("later")

        async def processing():
            state = await self.call("GET", f"{self.stack.sandbox}/_emulator/state")
            return [
                no
                for no, r in state["refunds"].items()
                if r["merchant_order_id"] == order_id and r["status"] == "processing"
            ]

        try:
            refund = await self.refund(order_id, "course not as described")
            # The API answers before the refund's workflow asks the gateway: wait for it.
            [refund_no] = await until(f"the refund of {order_id} at the gateway", processing)
        finally:
            await self.gateway_behaviour("instant")
        url = f"{self.stack.sandbox}/_emulator/refunds/{refund_no}/settle"
        await self.call("POST", url, json={"outcome": "failed"})

        async def failed():
            url = f"{self.stack.api}/v1/refunds/{refund['refund_id']}"
            answer = await self.call("GET", url, headers=self.storefront)
            return answer["status"] == "failed"

        await until(f"the refund of {order_id} to fail", failed)
        self.failed_refund_id = refund["refund_id"]


async def build_mix(stack: Stack) -> Shop:
    """Plays every purchase of MIX (one after the other: the failed refund switches the
    gateway's behaviour for a moment) and waits until each order is where it should be."""
    async with httpx.AsyncClient(timeout=60) as http:
        shop = Shop(http, stack)
        for p in MIX:
            print(f"  {p.order_id}: {p.shows}", flush=True)
            await shop.play(p)
        return shop


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


async def wait_for_visibility(stack: Stack) -> None:
    """Temporal's list queries see what the mix did (search attributes are indexed a
    moment after the workflow sets them)."""
    from temporalio.client import Client

    client = await Client.connect(stack.temporal, namespace=NAMESPACE)

    async def count(query: str, n: int):
        return (await client.count_workflows(query)).count >= n

    checks = [
        (ALL_CHECKOUTS, len(MIX)),
        (NEEDS_SUPPORT, 2),  # the held payment and the failed refund, and why
        (f"NeedsAttention = '{NeedsAttention.HELD_PAYMENT}'", 1),
        (f"NeedsAttention = '{NeedsAttention.REFUND_FAILED}'", 1),
        (STRAYS, 1),  # the late payment's refund
        *(
            (f"OrderId = '{p.order_id}' AND PaymentStatus IN ({_quoted(p.payment_statuses)})", 1)
            for p in MIX
        ),
    ]
    for query, n in checks:
        await until(f"{n} workflow(s) for {query}", lambda q=query, n=n: count(q, n))


# ---- the pictures -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    file: str
    what: str


SHOTS = (
    Shot("needs-support.png", f"the saved view {NEEDS_SUPPORT_VIEW!r} with Kassa's columns"),
    Shot("checkouts.png", "every checkout of the mix, by PaymentStatus"),
    Shot("waiting-checkout.png", "a checkout waiting for its buyer: summary and details"),
    Shot("held-payment.png", "a payment of another amount, held for support"),
    Shot("failed-refund.png", "a refund the gateway could not pay out"),
    Shot("stray-captures.png", "the refund of a late payment, by RefundKind"),
    Shot("audit.png", "an order's audit log, as support reads it from the API"),
)


def list_url(stack: Stack, query: str) -> str:
    return f"{stack.ui}/namespaces/{NAMESPACE}/workflows?query={quote(query)}"


def workflow_url(stack: Stack, workflow_id: str) -> str:
    # The UI goes on to the latest run of the workflow.
    return f"{stack.ui}/namespaces/{NAMESPACE}/workflows/{quote(workflow_id)}"


async def take_screenshots(stack: Stack, shop: Shop, out: Path) -> list[Path]:
    from playwright.async_api import async_playwright, expect

    by_buyer = {p.buyer: p for p in MIX}
    saved: list[Path] = []
    profile = Path(tempfile.mkdtemp(prefix="kassa-shots-chromium-"))
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                args=CHROMIUM_FLAGS,
                headless=True,
                viewport=VIEWPORT,
                timezone_id="UTC",
                locale="en-US",
                color_scheme="light",
            )
            browser.set_default_timeout(30_000)
            page = await browser.new_page()

            async def shoot(name: str) -> None:
                path = out / name
                await page.screenshot(path=path)
                saved.append(path)
                print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

            async def rows(*workflow_ids: str) -> None:
                for wid in workflow_ids:
                    await expect(page.get_by_role("link", name=wid, exact=True)).to_be_visible()

            # 1. The saved view, made as docs/support.md says: the raw query, "Save as New",
            # a name; then the columns (kept by the browser per namespace, like the view).
            await page.goto(f"{stack.ui}/namespaces/{NAMESPACE}/workflows")
            await page.get_by_test_id("toggle-manual-query").click()
            await page.get_by_placeholder("Enter a query").fill(NEEDS_SUPPORT)
            await page.get_by_role("button", name="Search", exact=True).click()
            await page.get_by_test_id("create-view-button").click()
            await page.get_by_test_id("workflow-save-view-modal-input").fill(NEEDS_SUPPORT_VIEW)
            await page.get_by_role("button", name="Save", exact=True).click()
            await page.get_by_test_id("workflows-summary-table-configuration-button").click()
            for column in COLUMNS_REMOVED:
                await page.get_by_role("button", name=f"Remove {column} column").click()
            for column in COLUMNS_ADDED:
                await page.get_by_role("button", name=f"Add {column} column").click()
            close = page.get_by_role("button", name="Close Workflows Table configuration")
            await close.click()
            await expect(close).to_be_hidden()  # the drawer slides away
            held = by_buyer["pay_other"].workflow_id
            await rows(held, refund_workflow_id(shop.failed_refund_id))
            await expect(page.get_by_test_id("saved-views-button")).to_contain_text(
                NEEDS_SUPPORT_VIEW
            )
            await shoot(SHOTS[0].file)

            # 2. Every checkout, with its PaymentStatus.
            await page.goto(list_url(stack, ALL_CHECKOUTS))
            await rows(*(p.workflow_id for p in MIX))
            await shoot(SHOTS[1].file)

            # 3-5. A workflow's User Metadata tab: the summary (order, amount, customer,
            # gateway), the items, and what it is doing now (its current details).
            async def metadata(workflow_id: str, waits_for: str, name: str) -> None:
                await page.goto(workflow_url(stack, workflow_id))
                await page.get_by_test_id("user-metadata-tab").click()
                # Summary, details and current details are rendered in sandboxed frames,
                # the current details last.
                current = page.frame_locator("iframe").last.locator("body")
                await expect(current).to_contain_text(waits_for)
                await shoot(name)

            waiting = by_buyer["nothing"]
            await metadata(waiting.workflow_id, "Waiting for the buyer to pay", SHOTS[2].file)
            await metadata(held, "Held for support", SHOTS[3].file)
            failed = refund_workflow_id(shop.failed_refund_id)
            await metadata(failed, "Refund failed", SHOTS[4].file)

            # 6. Stray captures: the late payment's own refund.
            await page.goto(list_url(stack, STRAYS))
            await expect(
                page.get_by_role("link", name=re.compile(r"^refund-rf_stray_"))
            ).to_be_visible()
            await shoot(SHOTS[5].file)

            # 7. The audit of the order support cancelled: the API, with the support key
            # (on a page of its own, so the key never goes to the Temporal UI).
            api_page = await browser.new_page()
            await api_page.set_extra_http_headers(shop.support)
            cancelled = by_buyer["cancel"].order_id
            await api_page.goto(f"{stack.api}/v1/orders/{cancelled}/audit")
            await expect(api_page.locator("body")).to_contain_text('"action":"cancel"')
            path = out / SHOTS[6].file
            await api_page.screenshot(path=path)
            saved.append(path)
            await browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return saved


# ---- the command --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tooling.screenshots",
        description="Regenerate docs/support/*.png: the embedded stack, a scripted mix of "
        "checkouts, and the Temporal UI in headless Chromium.",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go (%(default)s)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running afterwards (Ctrl-C stops it) to look around",
    )
    return parser.parse_args(argv)


async def _generate(stack: Stack, out: Path) -> list[Path]:
    print("The mix:", flush=True)
    shop = await build_mix(stack)
    await wait_for_visibility(stack)
    print("Screenshots:", flush=True)
    return await take_screenshots(stack, shop, out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no {CHROMIUM}: apt-get install -y chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    # Ctrl-C or a kill stops the stack too (started in the background, SIGINT is ignored).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    stack = Stack(Path(tempfile.mkdtemp(prefix="kassa-shots-")))
    try:
        print(f"Starting the stack (kassa run, data in {stack.data_dir})…", flush=True)
        stack.start()
        asyncio.run(_generate(stack, args.out))
        if args.keep:
            print(f"Temporal UI {stack.ui}, API {stack.api}; Ctrl-C stops it.", flush=True)
            try:
                stack.proc.wait()
            except KeyboardInterrupt:
                pass
    finally:
        stack.stop()
        shutil.rmtree(stack.data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
