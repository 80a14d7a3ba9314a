"""What the emulated Alipay knows: its configuration and its trades, and how a trade moves.

A trade goes NOT_SCANNED (a precreate QR nobody scanned yet: to the merchant's query and
close, the trade does not exist) -> WAIT_BUYER_PAY (scanned, or a page.pay cashier opened)
-> TRADE_SUCCESS (paid) -> TRADE_CLOSED (fully refunded) or TRADE_FINISHED (no longer
refundable); or WAIT_BUYER_PAY -> TRADE_CLOSED (closed by the merchant, or timed out).
A QR closed or timed out before anyone scanned it is dead: it can no longer be paid.

State lives in memory only (a restart forgets every trade).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateways import alipay_protocol as protocol
from gateways.emulators.alipay.keys import DEFAULT_KEYS_DIR
from gateways.emulators.faults import Faults

NOT_SCANNED = "NOT_SCANNED"
WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_CLOSED = "TRADE_CLOSED"
TRADE_FINISHED = "TRADE_FINISHED"
PAID = (TRADE_SUCCESS, TRADE_FINISHED)
OPEN = (NOT_SCANNED, WAIT_BUYER_PAY)

# Alipay's notify schedule: the first at once, then after 4m, 10m, 10m, 1h, 2h, 6h, 15h.
NOTIFY_SCHEDULE = (0.0, 240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)
DEFAULT_TRADE_TIMEOUT = timedelta(days=15)  # Alipay closes unpaid trades after 15 days
BUYER_ID = "2088102177846880"
SELLER_ID = "2088102177296610"


@dataclass
class AlipayConfig:
    public_url: str  # where buyers reach the emulator (QR contents, cashier pages)
    keys_dir: Path = DEFAULT_KEYS_DIR
    time_factor: float = 1.0  # multiplies the notify schedule (tests: 0.001 → 4m is 0.24 s)
    notify_schedule: tuple[float, ...] = NOTIFY_SCHEDULE
    notify_timeout: float = 5.0  # seconds the merchant has to answer a notify
    tick: float = 0.05  # how often timed-out trades are looked for, seconds
    faults: Faults | None = None

    def buyer_url(self, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/qr/{token}"


@dataclass
class AlipayState:
    trades: dict[str, dict] = field(default_factory=dict)  # by out_trade_no
    by_token: dict[str, str] = field(default_factory=dict)  # QR / cashier token -> out_trade_no
    notifies: list[dict] = field(default_factory=list)  # one row per delivery attempt
    faults: Faults = field(default_factory=Faults)

    def find(self, biz: dict) -> dict | None:
        """The trade a request names: trade_no wins over out_trade_no, as at Alipay."""
        if trade_no := biz.get("trade_no"):
            return next((t for t in self.trades.values() if t["trade_no"] == trade_no), None)
        return self.trades.get(biz.get("out_trade_no") or "")

    def due(self, at: datetime) -> list[dict]:
        """Open trades whose deadline has passed (not yet dealt with)."""
        return [
            t
            for t in self.trades.values()
            if t["status"] in OPEN
            and not t["dead"]
            and t["deadline"]
            and datetime.fromisoformat(t["deadline"]) <= at
        ]


def now() -> datetime:
    return datetime.now(UTC)


def new_trade(
    config: AlipayConfig, biz: dict, params: dict, product: str, amount: int, deadline
) -> dict:
    token = "bax" + secrets.token_hex(12)
    return {
        "out_trade_no": biz["out_trade_no"],
        "trade_no": None,  # only once the trade exists (scanned, or cashier opened)
        "product": product,  # precreate (QR) or page (PC cashier)
        "status": NOT_SCANNED,
        "total_amount": protocol.to_yuan(amount, protocol.CURRENCY),
        "amount": amount,
        "subject": biz["subject"],
        "notify_url": params.get("notify_url"),
        "return_url": params.get("return_url"),
        "token": token,
        "qr_code": config.buyer_url(token),
        "timeout_express": biz.get("timeout_express"),
        "deadline": deadline.isoformat() if deadline else None,
        "dead": False,  # a QR closed or timed out before anyone scanned it
        "created_at": now().isoformat(),
        "gmt_create": None,
        "gmt_payment": None,
        "gmt_close": None,
        "refund_fee": 0,  # fen, cumulative
        "refunds": {},  # by out_request_no
        "declines": 0,  # times the buyer gave up or the payment failed at the cashier
    }


def scan(trade: dict) -> None:
    """The buyer scans the QR (or opens the cashier): the trade now exists, waiting."""
    if trade["status"] != NOT_SCANNED:
        return
    at = now()
    trade["status"] = WAIT_BUYER_PAY
    trade["trade_no"] = (
        at.astimezone(protocol.BEIJING).strftime("%Y%m%d")
        + "22001"
        + "".join(secrets.choice("0123456789") for _ in range(15))
    )
    trade["gmt_create"] = protocol.format_time(at)
    # timeout_express counts from the scan for a QR trade
    timeout = (
        protocol.parse_timeout_express(trade["timeout_express"], at)
        if trade["timeout_express"]
        else at + DEFAULT_TRADE_TIMEOUT
    )
    if trade["deadline"] is None or timeout < datetime.fromisoformat(trade["deadline"]):
        trade["deadline"] = timeout.isoformat()


def trade_view(trade: dict) -> dict:
    """The trade as alipay.trade.query answers it."""
    view = {
        "code": "10000",
        "msg": "Success",
        "trade_no": trade["trade_no"],
        "out_trade_no": trade["out_trade_no"],
        "buyer_logon_id": "buy***@example.com",
        "trade_status": trade["status"],
        "total_amount": trade["total_amount"],
        "buyer_user_id": BUYER_ID,
    }
    if trade["gmt_payment"]:
        view |= {
            "buyer_pay_amount": trade["total_amount"],
            "receipt_amount": trade["total_amount"],
            "invoice_amount": trade["total_amount"],
            "point_amount": "0.00",
            "send_pay_date": trade["gmt_payment"],
        }
    else:
        view |= {"buyer_pay_amount": "0.00", "point_amount": "0.00", "invoice_amount": "0.00"}
    return view


def notify_params(app_id: str, trade: dict, refund: dict | None = None) -> dict[str, str]:
    """A trade_status_sync notify about the trade as it is now (about a refund, with its
    fields), unsigned and without its notify_id (the notifier adds both)."""
    params = {
        "notify_time": protocol.format_time(now()),
        "notify_type": "trade_status_sync",
        "app_id": app_id,
        "auth_app_id": app_id,
        "charset": protocol.CHARSET,
        "version": protocol.VERSION,
        "trade_no": trade["trade_no"],
        "out_trade_no": trade["out_trade_no"],
        "buyer_id": BUYER_ID,
        "buyer_logon_id": "buy***@example.com",
        "seller_id": SELLER_ID,
        "seller_email": "sel***@example.com",
        "trade_status": trade["status"],
        "total_amount": trade["total_amount"],
        "subject": trade["subject"],
        "gmt_create": trade["gmt_create"],
        "gmt_payment": trade["gmt_payment"],
        "gmt_close": trade["gmt_close"],
    }
    if trade["gmt_payment"]:
        params |= {
            "receipt_amount": trade["total_amount"],
            "invoice_amount": trade["total_amount"],
            "buyer_pay_amount": trade["total_amount"],
            "point_amount": "0.00",
            "fund_bill_list": (
                f'[{{"amount":"{trade["total_amount"]}","fundChannel":"ALIPAYACCOUNT"}}]'
            ),
        }
    if refund is not None:
        params |= {
            "out_biz_no": refund["out_request_no"],
            "refund_fee": protocol.to_yuan(trade["refund_fee"], protocol.CURRENCY),
            "gmt_refund": refund["gmt_refund"] + ".000",
        }
    return {k: v for k, v in params.items() if v not in (None, "")}
