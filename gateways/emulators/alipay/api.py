"""The merchant's API: one route, /gateway.do (GET and POST, query and form parameters
merged), dispatching on `method`, every request's RSA2 signature checked against the
merchant's public key, every answer signed with the emulated Alipay's key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gateways import alipay_protocol as protocol
from gateways.emulators.alipay.keys import AlipayKeys
from gateways.emulators.alipay.notifier import Notifier
from gateways.emulators.alipay.state import (
    OPEN,
    PAID,
    TRADE_CLOSED,
    TRADE_SUCCESS,
    WAIT_BUYER_PAY,
    AlipayConfig,
    AlipayState,
    new_trade,
    now,
    scan,
    trade_view,
)

BUSINESS_FAILED = {"code": "40004", "msg": "Business Failed"}
SUB_MESSAGES = {
    "ACQ.TRADE_NOT_EXIST": "交易不存在",
    "ACQ.TRADE_STATUS_ERROR": "交易状态不合法",
    "ACQ.INVALID_PARAMETER": "参数无效",
    "ACQ.CONTEXT_INCONSISTENT": "交易信息被篡改",
    "ACQ.TRADE_HAS_SUCCESS": "交易已被支付",
    "ACQ.TRADE_HAS_CLOSE": "交易已经关闭",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": "退款金额无效",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "退款金额与订单金额不一致",
    "ACQ.TRADE_HAS_FINISHED": "交易已完结",
}


def failed(sub_code: str, **extra) -> dict:
    return {**BUSINESS_FAILED, "sub_code": sub_code, "sub_msg": SUB_MESSAGES[sub_code], **extra}


class Refused(Exception):
    """A gateway-level refusal (missing or invalid arguments): answered unsigned."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.content = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _invalid(sub_code: str, sub_msg: str) -> Refused:
    return Refused("40002", "Invalid Arguments", sub_code, sub_msg)


def _amount(text) -> int:
    amount = protocol.from_yuan(text)
    if not protocol.MIN_AMOUNT <= amount <= protocol.MAX_AMOUNT:
        raise ValueError(f"out of range: {text}")
    return amount


class Gateway:
    """What /gateway.do does; the buyer page and the controls use the same trades."""

    def __init__(
        self, config: AlipayConfig, state: AlipayState, keys: AlipayKeys, notifier: Notifier
    ) -> None:
        self.config, self.state, self.keys, self.notifier = config, state, keys, notifier
        self.methods: dict[str, Callable[[dict, dict], dict]] = {
            "alipay.trade.precreate": self.precreate,
            "alipay.trade.query": self.query,
            "alipay.trade.close": self.close,
            "alipay.trade.refund": self.refund,
            "alipay.trade.fastpay.refund.query": self.refund_query,
        }

    # ---- checks common to every call -------------------------------------------------------

    def checked(self, params: dict[str, str]) -> tuple[str, dict]:
        """The method and biz_content of a signed request; Refused for anything else."""
        for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version"):
            if not params.get(name):
                raise Refused(
                    "40001",
                    "Missing Required Arguments",
                    f"isv.missing-{name.replace('_', '-')}",
                    f"缺少{name}参数",
                )
        if params["app_id"] != self.keys.app_id:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != protocol.SIGN_TYPE:
            raise _invalid("isv.invalid-signature-type", "无效的签名类型")
        if not protocol.verify_request(params, self.keys.merchant_public):
            content = protocol.sign_content(params, ("sign",)).decode()
            raise _invalid(
                "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
                + content,
            )
        try:  # the format only: SDKs send host-local time (fzlee a naive datetime.now())
            datetime.strptime(params["timestamp"], protocol.TIME_FORMAT)
        except ValueError:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数") from None
        method = params["method"]
        if method not in self.methods and method != "alipay.trade.page.pay":
            raise _invalid("isv.invalid-method", "不存在的方法名")
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            raise _invalid("isv.invalid-parameter", "biz_content 不是 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("isv.invalid-parameter", "biz_content 不是 JSON 对象")
        return method, biz

    def expire_due(self) -> None:
        """Close the trades whose time is up (at most a tick late; and before any answer)."""
        for trade in self.state.due(now()):
            if trade["status"] == WAIT_BUYER_PAY:
                trade["status"] = TRADE_CLOSED
                trade["gmt_close"] = protocol.format_time(now())
                self.notifier.notify(trade)
            else:  # a QR nobody scanned: it just stops working
                trade["dead"] = True

    # ---- the methods ----------------------------------------------------------------------

    def _new_payment(self, biz: dict, params: dict, product: str) -> dict:
        """Checks and creates (or finds again) the trade of a precreate or a page.pay."""
        out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
        if not isinstance(out_trade_no, str) or not protocol.OUT_TRADE_NO_PATTERN.match(
            out_trade_no
        ):
            return failed("ACQ.INVALID_PARAMETER", sub_msg="out_trade_no 无效")
        if not isinstance(subject, str) or not protocol.subject_is_valid(subject):
            return failed("ACQ.INVALID_PARAMETER", sub_msg="subject 无效")
        try:
            amount = _amount(biz.get("total_amount"))
            deadlines = []
            if biz.get("time_expire"):
                deadlines.append(protocol.parse_time(biz["time_expire"]))
            if biz.get("qr_code_timeout_express"):
                deadlines.append(
                    protocol.parse_timeout_express(biz["qr_code_timeout_express"], now())
                )
            if biz.get("timeout_express"):
                protocol.parse_timeout_express(biz["timeout_express"], now())
        except ValueError as exc:
            return failed("ACQ.INVALID_PARAMETER", sub_msg=str(exc))
        deadline = min(deadlines, default=None)
        if deadline is not None and deadline <= now():
            return failed("ACQ.INVALID_PARAMETER", sub_msg="time_expire 已过")
        trade = self.state.trades.get(out_trade_no)
        if trade is not None:
            if trade["amount"] != amount:
                return failed("ACQ.CONTEXT_INCONSISTENT")
            if trade["status"] in PAID:
                return failed("ACQ.TRADE_HAS_SUCCESS")
            if trade["status"] == TRADE_CLOSED or trade["dead"]:
                return failed("ACQ.TRADE_HAS_CLOSE")
            return {"code": "10000", "msg": "Success", "trade": trade}
        trade = new_trade(self.config, biz, params, product, amount, deadline)
        self.state.trades[out_trade_no] = trade
        self.state.by_token[trade["token"]] = out_trade_no
        return {"code": "10000", "msg": "Success", "trade": trade}

    def precreate(self, biz: dict, params: dict) -> dict:
        answer = self._new_payment(biz, params, "precreate")
        if "trade" not in answer:
            return answer
        trade = answer.pop("trade")
        return {**answer, "out_trade_no": trade["out_trade_no"], "qr_code": trade["qr_code"]}

    def page_pay(self, params: dict[str, str]) -> dict:
        """The buyer's browser opens the PC cashier: the trade exists from now on."""
        method, biz = self.checked(params)
        if method != "alipay.trade.page.pay":
            raise _invalid("isv.invalid-method", "不是 alipay.trade.page.pay")
        answer = self._new_payment(biz, params, "page")
        if "trade" in answer:
            scan(answer["trade"])
        return answer

    def query(self, biz: dict, params: dict) -> dict:
        trade = self.state.find(biz)
        if trade is None or trade["trade_no"] is None:
            return failed(
                "ACQ.TRADE_NOT_EXIST",
                out_trade_no=biz.get("out_trade_no") or "",
                buyer_pay_amount="0.00",
                invoice_amount="0.00",
                point_amount="0.00",
                receipt_amount="0.00",
            )
        return trade_view(trade)

    def close(self, biz: dict, params: dict) -> dict:
        trade = self.state.find(biz)
        faults = self.state.faults
        if (
            trade is not None
            and trade["status"] in OPEN
            and not trade["dead"]
            and faults.roll("paid_before_close", faults.pay_before_close)
        ):  # the buyer pays while the close is on its way
            self.buyer_acts(trade, "succeeded")
        if trade is None or trade["trade_no"] is None:
            if trade is not None:
                trade["dead"] = True  # the QR can no longer be paid (reported by merchants)
            return failed("ACQ.TRADE_NOT_EXIST")
        if trade["status"] != WAIT_BUYER_PAY:
            return failed("ACQ.TRADE_STATUS_ERROR")
        trade["status"] = TRADE_CLOSED
        trade["gmt_close"] = protocol.format_time(now())
        self.notifier.notify(trade)
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
        }

    def refund(self, biz: dict, params: dict) -> dict:
        trade = self.state.find(biz)
        if trade is None or trade["trade_no"] is None:
            return failed("ACQ.TRADE_NOT_EXIST")
        try:
            amount = _amount(biz.get("refund_amount"))
        except ValueError as exc:
            return failed("ACQ.INVALID_PARAMETER", sub_msg=str(exc))
        request_no = biz.get("out_request_no") or trade["out_trade_no"]
        if not isinstance(request_no, str) or len(request_no) > 64:
            return failed("ACQ.INVALID_PARAMETER", sub_msg="out_request_no 无效")
        answer = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "buyer_logon_id": "buy***@example.com",
            "buyer_user_id": "2088102177846880",
            "send_back_fee": "0.00",
        }
        known = trade["refunds"].get(request_no)
        if known is not None:  # the same request again: nothing moves
            if known["amount"] != amount:
                return failed("ACQ.INVALID_PARAMETER", sub_msg="out_request_no 已用于其他金额")
            return answer | {
                "fund_change": "N",
                "refund_fee": protocol.to_yuan(trade["refund_fee"], protocol.CURRENCY),
                "gmt_refund_pay": known["gmt_refund"],
            }
        if trade["status"] == "TRADE_FINISHED":
            return failed("ACQ.TRADE_HAS_FINISHED")
        if trade["status"] != TRADE_SUCCESS:
            return failed("ACQ.TRADE_STATUS_ERROR")
        if trade["refund_fee"] + amount > trade["amount"]:
            return failed("ACQ.REASON_TRADE_REFUND_FEE_ERR")
        if not biz.get("out_request_no") and amount != trade["amount"]:
            return failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
        refund = {
            "out_request_no": request_no,
            "amount": amount,
            "refund_amount": protocol.to_yuan(amount, protocol.CURRENCY),
            "refund_reason": biz.get("refund_reason") or "",
            "gmt_refund": protocol.format_time(now()),
        }
        trade["refunds"][request_no] = refund
        trade["refund_fee"] += amount
        if trade["refund_fee"] == trade["amount"]:
            trade["status"] = TRADE_CLOSED
            trade["gmt_close"] = refund["gmt_refund"]
        self.notifier.notify(trade, refund)
        return answer | {
            "fund_change": "Y",
            "refund_fee": protocol.to_yuan(trade["refund_fee"], protocol.CURRENCY),
            "gmt_refund_pay": refund["gmt_refund"],
        }

    def refund_query(self, biz: dict, params: dict) -> dict:
        trade = self.state.find(biz)
        request_no = biz.get("out_request_no") or ""
        if trade is None or trade["trade_no"] is None:
            return failed("ACQ.TRADE_NOT_EXIST")
        refund = trade["refunds"].get(request_no)
        if refund is None:  # "nothing returned: it did not happen; request it again"
            return {"code": "10000", "msg": "Success"}
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "out_request_no": request_no,
            "total_amount": trade["total_amount"],
            "refund_amount": refund["refund_amount"],
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": refund["gmt_refund"],
        }

    # ---- the buyer ------------------------------------------------------------------------

    def buyer_acts(self, trade: dict, outcome: str) -> str | None:
        """The buyer scans (or opens the cashier), then pays, gives up, or only looks.
        None when done; else why it cannot be paid.

        Alipay has no decline: a payment that fails at the cashier (no balance, the buyer
        cancels in the app) leaves the trade WAIT_BUYER_PAY, and the buyer may try again
        until the trade is closed or times out (TRADE_CLOSED, notified). So "declined"
        counts a failed try and changes nothing the merchant can see."""
        self.expire_due()
        if trade["dead"] or trade["status"] == TRADE_CLOSED:
            return "the trade is closed"
        if trade["status"] in PAID:
            return "the trade is already paid"
        scan(trade)
        if outcome == "succeeded":
            trade["status"] = TRADE_SUCCESS
            trade["gmt_payment"] = protocol.format_time(now())
            self.notifier.notify(trade)
        elif outcome == "declined":
            trade["declines"] += 1
        return None


def gateway_routes(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    state = gateway.state

    def answer(method: str, content: dict, signed: bool = True) -> Response:
        key = gateway.keys.gateway_private if signed else None
        return Response(
            protocol.response_body(method, content, key),
            media_type="application/json;charset=utf-8",
        )

    @router.api_route("/gateway.do", methods=["GET", "POST"])
    async def gateway_do(request: Request):
        params = dict(request.query_params)
        if request.method == "POST":
            params |= {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        method = params.get("method") or "error"
        gateway.expire_due()
        try:
            if method == "alipay.trade.page.pay":  # the buyer's browser, not the merchant
                result = gateway.page_pay(params)
                if "trade" not in result:
                    return answer(method, result)
                return RedirectResponse(result["trade"]["qr_code"], status_code=302)
            method, biz = gateway.checked(params)
        except Refused as refused:
            return answer(method, refused.content, signed=False)
        faults = state.faults
        if faults.slow_seconds:
            await asyncio.sleep(faults.slow_seconds)
        if faults.call_fails():  # before the effect: nothing happened
            return answer(
                method,
                {
                    "code": "20000",
                    "msg": "Service Currently Unavailable",
                    "sub_code": "isp.unknow-error",
                    "sub_msg": "系统繁忙",
                },
            )
        content = gateway.methods[method](biz, params)
        if faults.answer_lost():  # after the effect: the answer never arrives
            return Response("upstream timed out", status_code=504)
        return answer(method, content)

    return router
