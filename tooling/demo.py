"""`kassa demo`: a load generator for people trying Kassa. It drives N purchases through the
public API like a storefront and its buyers would (the buyers press Pay or Decline on the
sandbox gateway's payment page), shows a progress bar, and ends with a summary table.

The mix (reproducible with `--seed`), and the status each purchase must end in:

- paid: the buyer pays at once; `fulfilled`.
- retried: the first payment is declined, the buyer asks for another one
  (POST /v1/orders/{id}/retry) and pays it; `fulfilled` after two payments.
- declined: declined on every payment Kassa offers (KASSA_MAX_PAYMENT_ATTEMPTS, 3 by
  default), retrying while the order says `can_retry`; `failed`.
- cancelled: the buyer opens the page and leaves; the storefront cancels the abandoned
  checkout (POST /v1/orders/{id}/cancel); `cancelled`.
- walked away: the buyer opens the page and never comes back. Left `awaiting_payment`
  (it expires when its payment window closes); with `--expire-after S` opened with an
  S-second window, and the demo waits until it is `expired`.
- refunded: paid, fulfilled, then refunded in full by the storefront
  (POST /v1/orders/{id}/refunds); `refunded`.

Only HTTP: the API with the storefront key, and the payment page the API hands out.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# (scenario, weight, the status it must end in, what happens)
SCENARIOS = {
    "paid": (0.62, "fulfilled", "pays at once"),
    "retried": (0.08, "fulfilled", "declined, retries, pays"),
    "declined": (0.07, "failed", "declined on every attempt"),
    "cancelled": (0.05, "cancelled", "abandoned; the storefront cancels"),
    "walked away": (0.08, "awaiting_payment", "abandoned; left open"),
    "refunded": (0.10, "refunded", "paid, then refunded in full"),
}

# A small online school's catalogue: (sku, title, price in fen).
CATALOGUE = [
    ("course-python-101", "Python 101 (video course)", 19900),
    ("course-data-analysis", "Data analysis with pandas", 29900),
    ("course-go-concurrency", "Concurrency in Go", 39900),
    ("ebook-sql", "SQL, the e-book", 4900),
    ("ebook-system-design", "System design, the e-book", 8800),
    ("ebook-temporal", "Durable workflows, the e-book", 6900),
    ("membership-monthly", "Membership, 1 month", 3000),
    ("membership-annual", "Membership, 12 months", 29800),
]
BUYERS = [
    "li_wei", "wang_fang", "zhang_min", "liu_yang", "chen_jing", "yang_lei", "zhao_li",
    "huang_qiang", "zhou_xiu", "wu_jun", "xu_na", "sun_tao", "ma_chao", "zhu_hui",
]  # fmt: skip

POLL_FIRST, POLL_MAX = 0.1, 1.0  # seconds between polls of an order, backing off
FINAL = {"fulfilled", "failed", "cancelled", "expired", "rejected", "refunded"}
FINAL |= {"partially_refunded"}


class DemoError(Exception):
    """Something the storefront did not expect from the API or the gateway."""


class ApiUnreachable(Exception):
    pass


@dataclass
class Purchase:
    n: int
    scenario: str
    body: dict
    expires_in: int | None = None
    order_id: str | None = None
    status: str | None = None  # the final status seen
    payment_attempts: int = 0
    error: str | None = None
    checkout_seconds: float | None = None  # POST /v1/checkouts
    fulfilled_seconds: float | None = None  # from the POST to `fulfilled` seen

    @property
    def expected(self) -> str:
        if self.scenario == "walked away" and self.expires_in is not None:
            return "expired"
        return SCENARIOS[self.scenario][1]

    @property
    def as_expected(self) -> bool:
        if self.error is not None or self.status != self.expected:
            return False
        return self.scenario != "retried" or self.payment_attempts == 2


@dataclass
class Report:
    purchases: list[Purchase]
    seconds: float
    api_url: str
    seed: int | None
    concurrency: int
    unexpected: list[Purchase] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected


def plan(checkouts: int, seed: int | None, expire_after: int | None) -> list[Purchase]:
    """The purchases: each a scenario and a basket, drawn from `seed`'s random numbers.
    Customer ids carry a fresh run tag, so runs with the same seed do not count against one
    customer's velocity limit."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    names = list(SCENARIOS)
    weights = [SCENARIOS[name][0] for name in names]
    purchases = []
    for n in range(checkouts):
        scenario = rng.choices(names, weights)[0]
        basket = rng.sample(CATALOGUE, rng.choices([1, 2, 3], [0.6, 0.3, 0.1])[0])
        items = [
            {
                "sku": sku,
                "title": title,
                "unit_amount": price,
                "quantity": 2 if sku.startswith("ebook") and rng.random() < 0.2 else 1,
            }
            for sku, title, price in basket
        ]
        body = {
            "customer_id": f"cus_{rng.choice(BUYERS)}_{run}{n:04d}",
            "items": items,
            "currency": "CNY",
            "gateway": "sandbox",
            "return_url": "https://shop.example.com/orders/done",
        }
        expires_in = None
        if scenario == "walked away" and expire_after is not None:
            expires_in = body["expires_in_seconds"] = expire_after
        purchases.append(Purchase(n, scenario, body, expires_in))
    return purchases


class Storefront:
    """The storefront's and the buyer's HTTP calls, with the API's rate limit respected."""

    def __init__(self, api: httpx.AsyncClient, gateway: httpx.AsyncClient):
        self.api = api
        self.gateway = gateway

    async def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        for _ in range(50):
            response = await self.api.request(method, path, **kwargs)
            if response.status_code not in (429, 503):
                return response
            await asyncio.sleep(float(response.headers.get("Retry-After", "0.5") or 0.5))
        return response

    async def order(self, order_id: str) -> dict:
        response = await self.call("GET", f"/v1/orders/{order_id}")
        if response.status_code != 200:
            raise DemoError(f"GET order: {response.status_code} {response.text[:200]}")
        return response.json()

    async def until(self, order_id: str, done, timeout: float) -> dict:
        """Poll the order until `done(order)`, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        while True:
            order = await self.order(order_id)
            if done(order) or time.monotonic() > deadline:
                return order
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    async def buyer(self, payment_url: str, outcome: str) -> None:
        """Open the payment page like a browser and press Pay (or Decline)."""
        page = await self.gateway.get(payment_url)
        if page.status_code != 200:
            raise DemoError(f"payment page: {page.status_code}")
        if f'value="{outcome}"' not in page.text:
            status = re.search(r'id="status">([^<]*)<', page.text)
            raise DemoError(f"no {outcome} button: {status.group(1) if status else page.text}")
        pressed = await self.gateway.post(payment_url, data={"outcome": outcome})
        if pressed.status_code != 200:
            raise DemoError(f"pressing {outcome}: {pressed.status_code}")


async def purchase(shop: Storefront, p: Purchase, timeout: float) -> None:
    """Play one purchase; record how it ended in `p`."""
    started = time.monotonic()
    created = await shop.call(
        "POST", "/v1/checkouts", json=p.body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    p.checkout_seconds = time.monotonic() - started
    if created.status_code != 201:
        raise DemoError(f"POST /v1/checkouts: {created.status_code} {created.text[:200]}")
    checkout = created.json()
    p.order_id, p.status = checkout["order_id"], checkout["status"]
    if checkout["status"] != "awaiting_payment":
        return
    payment_url = checkout["payment"]["payment_url"]

    def ended(order):  # fulfilled, or ended otherwise
        return order["status"] in FINAL

    def decided(order):  # the decline recorded (the buyer may retry), or the order ended
        return order["can_retry"] or order["status"] in FINAL

    def refund_done(order):  # refunded, or the refund failed
        refunds = order["refunds"]
        return order["status"] != "fulfilled" or (refunds and refunds[-1]["status"] == "failed")

    if p.scenario in ("paid", "refunded", "retried"):
        if p.scenario == "retried":
            await shop.buyer(payment_url, "declined")
            order = await shop.until(p.order_id, decided, timeout)
            if not order["can_retry"]:
                raise DemoError(f"no retry offered after a decline: {order['status']}")
            payment_url = await retry(shop, p.order_id)
        await shop.buyer(payment_url, "succeeded")
        order = await shop.until(p.order_id, ended, timeout)
        if order["status"] == "fulfilled":
            p.fulfilled_seconds = time.monotonic() - started
        if p.scenario == "refunded" and order["status"] == "fulfilled":
            refund = await shop.call(
                "POST",
                f"/v1/orders/{p.order_id}/refunds",
                json={"reason": "the buyer changed their mind"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            if refund.status_code != 202:
                raise DemoError(f"refund: {refund.status_code} {refund.text[:200]}")
            order = await shop.until(p.order_id, refund_done, timeout)
    elif p.scenario == "declined":
        while True:
            await shop.buyer(payment_url, "declined")
            order = await shop.until(p.order_id, decided, timeout)
            if not order["can_retry"]:
                break
            payment_url = await retry(shop, p.order_id)
    elif p.scenario == "cancelled":
        page = await shop.gateway.get(payment_url)  # looks, and leaves
        page.raise_for_status()
        await asyncio.sleep(0.2)
        cancelled = await shop.call(
            "POST", f"/v1/orders/{p.order_id}/cancel", json={"reason": "abandoned cart"}
        )
        if cancelled.status_code != 200:
            raise DemoError(f"cancel: {cancelled.status_code} {cancelled.text[:200]}")
        order = cancelled.json()
    else:  # walked away
        page = await shop.gateway.get(payment_url)
        page.raise_for_status()
        if p.expires_in is None:
            order = await shop.order(p.order_id)
        else:
            order = await shop.until(p.order_id, ended, p.expires_in + timeout)
    p.status, p.payment_attempts = order["status"], order["payment_attempts"]


async def retry(shop: Storefront, order_id: str) -> str:
    """Ask for another payment after a decline; its page."""
    retried = await shop.call("POST", f"/v1/orders/{order_id}/retry")
    if retried.status_code != 200:
        raise DemoError(f"retry: {retried.status_code} {retried.text[:200]}")
    return retried.json()["payment"]["payment_url"]


async def run_demo(
    api_url: str,
    api_key: str,
    checkouts: int = 50,
    concurrency: int = 10,
    seed: int | None = None,
    expire_after: int | None = None,
    timeout: float = 60.0,
    console: Console | None = None,
) -> Report:
    """Drive the purchases against the API at `api_url`; the report of how each ended.
    Raises ApiUnreachable when the API does not answer."""
    console = console or Console()
    purchases = plan(checkouts, seed, expire_after)
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with (
        httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30, limits=limits) as api,
        httpx.AsyncClient(timeout=30, limits=limits) as gateway,
    ):
        try:
            (await api.get("/healthz")).raise_for_status()
        except httpx.HTTPError as err:
            raise ApiUnreachable(f"Kassa's API does not answer at {api_url}: {err}") from err
        shop = Storefront(api, gateway)
        queue: asyncio.Queue[Purchase] = asyncio.Queue()
        for p in purchases:
            queue.put_nowait(p)
        tally: Counter[str] = Counter()
        columns = (
            TextColumn("[bold]purchases"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tally]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("purchases", total=len(purchases), tally="")

            async def buyer_after_buyer() -> None:
                while not queue.empty():
                    p = queue.get_nowait()
                    try:
                        await purchase(shop, p, timeout)
                    except (DemoError, httpx.HTTPError) as err:
                        p.error = f"{type(err).__name__}: {err}"
                    tally["as expected" if p.as_expected else "UNEXPECTED"] += 1
                    shown = f"{tally['as expected']} as expected"
                    if tally["UNEXPECTED"]:
                        shown += f", [red]{tally['UNEXPECTED']} unexpected[/red]"
                    progress.update(task, advance=1, tally=shown)

            started = time.monotonic()
            await asyncio.gather(*(buyer_after_buyer() for _ in range(concurrency)))
            seconds = time.monotonic() - started
    unexpected = [p for p in purchases if not p.as_expected]
    return Report(purchases, seconds, api_url, seed, concurrency, unexpected)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(q / 100 * len(ordered))) - 1)]


def _latency(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{percentile(values, 50):.2f} / {percentile(values, 95):.2f}"


def summary(report: Report) -> Table:
    """The table: per scenario the count, how many ended as expected, the statuses they
    ended in (unexpected ones in red), and the latencies (seconds, p50 / p95)."""
    table = Table(
        title=f"kassa demo: {len(report.purchases)} purchases against {report.api_url}",
        box=box.SIMPLE_HEAD,
        caption="ok: ended as expected (✗: did not). Seconds, p50 / p95; checkout: POST "
        "/v1/checkouts until the payment page; fulfilled: from that POST until the order "
        "is seen fulfilled",
    )
    table.add_column("scenario", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("ok", justify="right")
    table.add_column("ended as", no_wrap=True)
    table.add_column("checkout", justify="right", no_wrap=True)
    table.add_column("fulfilled", justify="right", no_wrap=True)
    groups = [(name, [p for p in report.purchases if p.scenario == name]) for name in SCENARIOS]
    groups = [(name, ps) for name, ps in groups if ps]
    groups.append(("all", report.purchases))
    for name, ps in groups:
        if name == "all":
            table.add_section()
        ok = sum(p.as_expected for p in ps)
        ended = Counter(p.status for p in ps if p.error is None)
        wrong = Counter(p.status for p in ps if p.error is None and not p.as_expected)
        lines = [
            f"{status} {count}" + (f" [red]({wrong[status]} ✗)[/red]" if wrong[status] else "")
            for status, count in ended.most_common()
        ]
        if errors := sum(p.error is not None for p in ps):
            lines.append(f"[red]errors {errors} ✗[/red]")
        table.add_row(
            name,
            str(len(ps)),
            str(ok) if ok == len(ps) else f"[red]{ok}[/red]",
            "\n".join(lines),
            _latency([p.checkout_seconds for p in ps if p.checkout_seconds is not None]),
            _latency([p.fulfilled_seconds for p in ps if p.fulfilled_seconds is not None]),
        )
    return table


def expectations(report: Report) -> str:
    """What each scenario of the run must end in."""
    seen = {}
    for p in report.purchases:
        note = {"retried": " on the 2nd payment", "awaiting_payment": " (left open)"}
        seen.setdefault(p.scenario, p.expected + note.get(p.scenario, note.get(p.expected, "")))
    return "expected: " + "; ".join(f"{name} → {seen[name]}" for name in SCENARIOS if name in seen)


def print_report(report: Report, console: Console) -> None:
    console.print(summary(report))
    console.print(expectations(report), highlight=False)
    n = len(report.purchases)
    console.print(
        f"{n} purchases in {report.seconds:.1f} s at concurrency {report.concurrency}: "
        f"{n / report.seconds:.2f} purchases/s"
        + (f" (seed {report.seed})" if report.seed is not None else "")
    )
    for p in report.unexpected:
        console.print(
            f"[red]UNEXPECTED[/red] #{p.n} {p.scenario} order {p.order_id}: "
            f"{p.error or p.status} (expected {p.expected}"
            + (", 2 payments" if p.scenario == "retried" else "")
            + (f"; {p.payment_attempts} payments)" if p.error is None else ")")
        )


def main(
    api_url: str,
    api_key: str,
    checkouts: int,
    concurrency: int,
    seed: int | None,
    expire_after: int | None,
) -> int:
    """`kassa demo`: 0 when every purchase ended as expected, 1 when one did not, 2 when the
    API cannot be reached, 130 when interrupted."""
    console = Console()
    try:
        report = asyncio.run(
            run_demo(api_url, api_key, checkouts, concurrency, seed, expire_after, console=console)
        )
    except ApiUnreachable as err:
        console.print(f"[red]{err}[/red]\nIs Kassa running? Start it with `make run`.")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: the purchases under way are left as they are")
        return 130
    print_report(report, console)
    return 0 if report.ok else 1
