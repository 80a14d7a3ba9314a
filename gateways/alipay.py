"""Kassa's adapter for Alipay (OpenAPI "gateway.do", RSA2 keys), on a shared httpx client;
hand-written over gateways/alipay_protocol.py (no Alipay SDK at runtime). Its emulator lives
in gateways/emulators/alipay/.

How Alipay fits the interface (gateways/base.py):

- Payments are face-to-face QR codes (`alipay.trade.precreate`): the session carries the QR
  content (`qr_code`) and no page URL; with `cashier="page"` (setting `alipay_cashier`) the
  buyer is sent to the PC cashier instead (`alipay.trade.page.pay`, a signed redirect URL in
  `payment_url`).
- The merchant reference is the `out_trade_no` (`reference`: the order id with `_` doubled and
  `.`, `:`, `-` escaped, `_a<n>` for a retry; hashed when that does not fit in 64), stored by
  the core with its order and attempt. Alipay numbers a trade (`trade_no`) only once the buyer
  scans, so the session names no payment id; the capture's id in words from Alipay is the
  `trade_no`. One out_trade_no is one trade: `list_payments` holds at most one.
- Not found (`ACQ.TRADE_NOT_EXIST`: a QR nobody scanned yet) is NOT_FOUND, never an error.
- Close, then query: the answer is the trade's final state (`ACQ.TRADE_STATUS_ERROR` on a
  close means paid, or already closed; `ACQ.TRADE_NOT_EXIST` means never scanned, and the
  QR is dead past its `time_expire`, which every payment carries).
- Refunds settle synchronously (`fund_change`); `out_request_no` is Kassa's refund number,
  so asking again never refunds twice. A refund the query does not know (an empty answer)
  is `status None`: the core asks for it again with the same number.
- Alipay has no decline: a failed payment leaves the trade WAIT_BUYER_PAY (the buyer tries
  again on the same QR), so Alipay payments end paid, closed or expired.
- Callbacks are form posts signed over their sorted parameters; the reply Alipay needs is
  the exact body `success` (`callback_reply`), else it notifies again for 25 hours.
- CNY only (`currencies`), checked at POST /v1/checkouts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from gateways import alipay_protocol as protocol
from gateways.base import (
    CallbackReply,
    GatewayError,
    GatewayPayment,
    GatewayRefund,
    NewPayment,
    NewRefund,
    PaymentWord,
)
from kassa.contracts import PaymentSession, RefundEvent
from kassa.errors import GatewayRejected, InvalidSignature, MalformedCallback
from kassa.statuses import PaymentOutcome, RefundStatus

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"

_OUTCOMES = {
    "WAIT_BUYER_PAY": PaymentOutcome.PENDING,
    "TRADE_SUCCESS": PaymentOutcome.SUCCEEDED,
    "TRADE_FINISHED": PaymentOutcome.SUCCEEDED,
    "TRADE_CLOSED": PaymentOutcome.CLOSED,
}
# Refusals that say "try again" rather than "never": retried, same parameters.
_RETRY_SUB_CODES = {"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.unknow-error"}
RETRY_LATER = {408, 425, 429}


class AlipayGateway:
    name = "alipay"
    currencies = frozenset({protocol.CURRENCY})
    # What Alipay needs to read back from notify_url: exactly these 7 bytes (no newline, no
    # HTML, any HTTP 200), or it notifies again (4m, 10m, 10m, 1h, 2h, 6h, 15h).
    callback_reply = CallbackReply(protocol.NOTIFY_REPLY, "text/plain")

    def __init__(
        self,
        http: httpx.AsyncClient,
        gateway_url: str,
        app_id: str,
        merchant_private_key: rsa.RSAPrivateKey | str | bytes,
        alipay_public_key: rsa.RSAPublicKey | str | bytes,
        timeout: float = 10.0,
        cashier: str = "qr",
    ) -> None:
        """`cashier`: "qr" shows the buyer a QR code (face-to-face precreate), "page" sends
        the buyer's browser to Alipay's PC cashier (page.pay, a redirect)."""
        self._http = http
        self._url = gateway_url
        self._app_id = app_id
        self._private = (
            merchant_private_key
            if isinstance(merchant_private_key, rsa.RSAPrivateKey)
            else protocol.load_private_key(merchant_private_key)
        )
        self._alipay = (
            alipay_public_key
            if isinstance(alipay_public_key, rsa.RSAPublicKey)
            else protocol.load_public_key(alipay_public_key)
        )
        self._timeout = timeout
        if cashier not in ("qr", "page"):
            raise ValueError(f"cashier is qr or page, not {cashier!r}")
        self._cashier = cashier

    def reference(self, order_id: str, attempt: int) -> str:
        try:
            return protocol.out_trade_no(order_id, attempt)
        except ValueError as exc:
            raise GatewayRejected(f"alipay: {exc}") from exc

    # ---- requests ----------------------------------------------------------------------------

    def _signed(self, method: str, biz: dict, **common: str | None) -> dict[str, str]:
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": protocol.CHARSET,
            "timestamp": protocol.format_time(datetime.now(UTC)),
            "version": protocol.VERSION,
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
            **{k: v for k, v in common.items() if v},
        }
        return protocol.sign_request(params, self._private)

    async def _call(self, method: str, biz: dict, handles: frozenset[str] = frozenset(), **common):
        """The verified response object of a successful call, or of a business failure whose
        sub_code is in `handles`. GatewayError when the outcome is unknown (transport, 5xx,
        20000, ACQ.SYSTEM_ERROR, an answer that does not verify); GatewayRejected for a
        refusal."""
        params = self._signed(method, biz, **common)
        try:
            response = await self._http.post(self._url, data=params, timeout=self._timeout)
        except httpx.HTTPError as exc:  # timeouts included: the outcome is unknown
            raise GatewayError(f"alipay {method}: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in RETRY_LATER:
            raise GatewayError(f"alipay {method}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise GatewayRejected(f"alipay {method}: HTTP {response.status_code}")
        try:
            content, signed = protocol.open_response(method, response.content, self._alipay)
        except protocol.ResponseError as exc:
            raise GatewayError(f"alipay {method}: {exc}") from exc
        code, sub_code = content.get("code"), content.get("sub_code", "")
        if code == "20000" or sub_code in _RETRY_SUB_CODES:
            raise GatewayError(f"alipay {method}: {code} {sub_code}: {content.get('sub_msg')}")
        if not signed:  # gateway-level refusals only (our signature, app id, arguments)
            if code in ("10000", "40004"):
                raise GatewayError(f"alipay {method}: an unsigned {code} answer")
            raise GatewayRejected(
                f"alipay {method}: {code} {sub_code}: {content.get('sub_msg', '')[:200]}"
            )
        if code == "10000" or (code == "40004" and sub_code in handles):
            return content
        raise GatewayRejected(f"alipay {method}: {code} {sub_code}: {content.get('sub_msg')}")

    # ---- payments ----------------------------------------------------------------------------

    def _payment_biz(self, payment: NewPayment, out_trade_no: str) -> dict:
        try:
            total = protocol.to_yuan(payment.amount, payment.currency)
            time_expire = protocol.format_time(payment.expires_at)
        except ValueError as exc:
            raise GatewayRejected(f"alipay: {exc}") from exc
        return {
            "out_trade_no": out_trade_no,
            "total_amount": total,
            "subject": protocol.clean_subject(payment.description),
            "time_expire": time_expire,
        }

    async def create_payment(self, payment: NewPayment) -> PaymentSession:
        if self._cashier == "page":  # a signed redirect: no call, the trade opens with it
            return PaymentSession(
                gateway=self.name,
                payment_id=None,
                payment_url=self.page_pay_url(payment),
                expires_at=payment.expires_at,
            )
        out_trade_no = payment.merchant_order_id
        biz = self._payment_biz(payment, out_trade_no)
        data = await self._call(
            "alipay.trade.precreate",
            biz | {"product_code": "FACE_TO_FACE_PAYMENT"},
            notify_url=payment.notify_url,
        )
        return PaymentSession(
            gateway=self.name,
            payment_id=None,  # Alipay numbers the trade once the buyer scans
            payment_url=None,
            expires_at=payment.expires_at,
            qr_code=data["qr_code"],
        )

    def page_pay_url(self, payment: NewPayment) -> str:
        """The PC cashier (`alipay.trade.page.pay`) as a URL for the buyer's browser: a signed
        redirect, no call to Alipay (for the reworked interface's redirect action)."""
        out_trade_no = payment.merchant_order_id
        biz = self._payment_biz(payment, out_trade_no) | {"product_code": "FAST_INSTANT_TRADE_PAY"}
        params = self._signed(
            "alipay.trade.page.pay",
            biz,
            notify_url=payment.notify_url,
            return_url=payment.return_url,
        )
        return f"{self._url}?{urlencode(params)}"

    async def _query(self, out_trade_no: str) -> dict | None:
        """The trade, or None while it does not exist (a QR nobody scanned)."""
        data = await self._call(
            "alipay.trade.query",
            {"out_trade_no": out_trade_no},
            handles=frozenset({"ACQ.TRADE_NOT_EXIST"}),
        )
        return data if data["code"] == "10000" else None

    async def get_payment(self, merchant_order_id: str) -> GatewayPayment:
        """NOT_FOUND while Alipay says the trade does not exist: never an error."""
        data = await self._query(merchant_order_id)
        if data is None:
            return GatewayPayment(merchant_order_id, PaymentOutcome.NOT_FOUND)
        return _payment(data, merchant_order_id)

    async def list_payments(self, merchant_order_id: str) -> list[GatewayPayment]:
        data = await self._query(merchant_order_id)
        return [] if data is None else [_payment(data, merchant_order_id)]

    async def close_payment(self, merchant_order_id: str) -> GatewayPayment:
        """Close, then ask: the trade's final state. TRADE_STATUS_ERROR (paid, or closed
        already) and TRADE_NOT_EXIST (never scanned) are answers, not failures."""
        for _ in range(3):  # the buyer may scan between our close and our query
            await self._call(
                "alipay.trade.close",
                {"out_trade_no": merchant_order_id},
                handles=frozenset({"ACQ.TRADE_STATUS_ERROR", "ACQ.TRADE_NOT_EXIST"}),
            )
            data = await self._query(merchant_order_id)
            if data is None:  # never scanned: a dead QR once closed, or past its time_expire
                return GatewayPayment(merchant_order_id, PaymentOutcome.CLOSED)
            payment = _payment(data, merchant_order_id)
            if payment.outcome != PaymentOutcome.PENDING:
                return payment
        raise GatewayError(f"alipay: {merchant_order_id} still waits for the buyer after a close")

    # ---- refunds -----------------------------------------------------------------------------

    async def refund(self, refund: NewRefund) -> GatewayRefund:
        out_trade_no = refund.merchant_order_id  # one trade per out_trade_no
        try:
            amount = protocol.to_yuan(refund.amount, refund.currency)
        except ValueError as exc:
            raise GatewayRejected(f"alipay: {exc}") from exc
        await self._call(
            "alipay.trade.refund",
            {
                "out_trade_no": out_trade_no,
                "refund_amount": amount,
                "out_request_no": refund.refund_no,
                "refund_reason": protocol.clean_subject(refund.reason, limit=256, fallback="-"),
            },
        )
        # 10000 means refunded (fund_change "N": refunded by an earlier request, this number)
        return GatewayRefund(refund.refund_no, RefundStatus.SUCCEEDED, refund.amount)

    async def get_refund(self, refund_no: str, merchant_order_id: str) -> GatewayRefund:
        data = await self._call(
            "alipay.trade.fastpay.refund.query",
            {"out_trade_no": merchant_order_id, "out_request_no": refund_no},
        )
        if not data.get("refund_amount") or data.get("refund_status", "REFUND_SUCCESS") != (
            "REFUND_SUCCESS"
        ):
            return GatewayRefund(refund_no, None)  # unknown to Alipay: ask again, same number
        try:
            amount = protocol.from_yuan(data["refund_amount"])
        except ValueError as exc:
            raise GatewayError(f"alipay: refund query: {exc}") from exc
        return GatewayRefund(refund_no, RefundStatus.SUCCEEDED, amount)

    # ---- callbacks ---------------------------------------------------------------------------

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentWord | RefundEvent | None:
        """A notify (a form post). Verified with Alipay's public key; refund notices (they
        carry `out_biz_no`, the refund number) become RefundEvents; the notify_id, the same
        on every retry, is the event id. Reply `callback_reply`."""
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidSignature(f"not a form body: {exc}") from exc
        params = dict(pairs)
        if len(params) != len(pairs):
            raise InvalidSignature("a parameter appears twice")
        try:
            protocol.verify_notify(params, self._alipay)
        except ValueError as exc:
            raise InvalidSignature(str(exc)) from exc
        if any("\x00" in key or "\x00" in value for key, value in pairs):
            # Refused, not stripped, as the sandbox's: no field of the protocol has a NUL,
            # the inbox keeps the notify as it came and PostgreSQL cannot store one. A 400
            # every time, never a 500; the checkout's status checks ask Alipay instead.
            raise MalformedCallback("a parameter contains NUL (%00)")
        if params.get("app_id") != self._app_id:
            raise MalformedCallback(f"a notify for another app: {params.get('app_id')!r}")
        if params.get("notify_type") != "trade_status_sync":
            return None
        notify_id, out_trade_no = params.get("notify_id"), params.get("out_trade_no", "")
        if not notify_id or len(notify_id) > 128:
            raise MalformedCallback("no notify_id")
        if refund_no := params.get("out_biz_no"):
            return RefundEvent(self.name, notify_id, refund_no, RefundStatus.SUCCEEDED)
        status = params.get("trade_status")
        if status == "WAIT_BUYER_PAY":
            return None
        if status not in _OUTCOMES:
            raise MalformedCallback(f"unknown trade_status {status!r}")
        if not protocol.OUT_TRADE_NO_PATTERN.match(out_trade_no):
            raise MalformedCallback(f"not an out_trade_no: {out_trade_no!r}")
        try:
            amount = protocol.from_yuan(params.get("total_amount", ""))
        except ValueError as exc:
            raise MalformedCallback(str(exc)) from exc
        return PaymentWord(
            event_id=notify_id,
            merchant_order_id=out_trade_no,
            payment_id=params.get("trade_no") or out_trade_no,
            outcome=_OUTCOMES[status],
            amount=amount,
            currency=protocol.CURRENCY,
        )


def _payment(data: dict, merchant_order_id: str) -> GatewayPayment:
    status = data.get("trade_status")
    if status not in _OUTCOMES:
        raise GatewayError(f"alipay: unknown trade_status {status!r}")
    try:
        amount = protocol.from_yuan(data.get("total_amount", ""))
    except ValueError as exc:
        raise GatewayError(f"alipay: {exc}") from exc
    # Alipay's query does not say how much of a trade was refunded, unless all of it was.
    outcome, refunded = _OUTCOMES[status], None
    if status == "TRADE_CLOSED" and data.get("send_pay_date"):  # paid, then refunded in full
        outcome, refunded = PaymentOutcome.SUCCEEDED, amount
    return GatewayPayment(
        payment_id=data.get("trade_no") or merchant_order_id,
        merchant_order_id=merchant_order_id,
        outcome=outcome,
        amount=amount,
        currency=protocol.CURRENCY,
        refunded_amount=refunded,
    )
