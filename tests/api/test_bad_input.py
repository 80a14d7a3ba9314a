"""Bad input over real HTTP: each gets a clear 4xx problem naming the field, and nothing is
written (no order row, no idempotency key, no workflow, nothing at the gateway)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, update
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import CheckoutIn
from db import orders
from db.models import IdempotencyKey, Order, PaymentEventRecord
from gateways import alipay_protocol, sandbox_protocol
from kassa.ids import checkout_workflow_id
from kassa.settings import DEV_SUPPORT_KEY, Settings
from kassa.statuses import OrderStatus
from tests.e2e.test_purchase import checkout_body


async def count_rows(sessions) -> tuple[int, int, int]:
    async with sessions() as session:
        return tuple(
            [
                await session.scalar(select(func.count()).select_from(model))
                for model in (Order, IdempotencyKey, PaymentEventRecord)
            ]
        )


@pytest.fixture
async def unchanged(stack, sessions, sandbox):
    """Asserts, after the test, that it wrote nothing anywhere."""
    before = (await count_rows(sessions), len(sandbox.payments))
    yield
    assert (await count_rows(sessions), len(sandbox.payments)) == before


def item(**overrides) -> dict:
    return {"sku": "course-1", "title": "Course", "unit_amount": 100, "quantity": 1, **overrides}


BAD_BODIES = [
    ("zero amount", {"items": [item(unit_amount=0)]}, "items[0].unit_amount"),
    ("negative amount", {"items": [item(unit_amount=-100)]}, "items[0].unit_amount"),
    ("float amount", {"items": [item(unit_amount=9.99)]}, "items[0].unit_amount"),
    ("amount as string", {"items": [item(unit_amount="100")]}, "items[0].unit_amount"),
    ("empty items", {"items": []}, "items"),
    ("zero quantity", {"items": [item(quantity=0)]}, "items[0].quantity"),
    ("absurd quantity", {"items": [item(quantity=10**9)]}, "items[0].quantity"),
    ("too many items", {"items": [item(sku=f"s{n}") for n in range(51)]}, "items"),
    ("huge unit amount", {"items": [item(unit_amount=10**15)]}, "items[0].unit_amount"),
    ("unknown currency", {"currency": "XYZ"}, "currency"),
    ("lower-case currency", {"currency": "cny"}, "currency"),
    ("not money", {"currency": "XAU"}, "currency"),
    ("fund code CLF", {"currency": "CLF"}, "currency"),
    ("fund code USN", {"currency": "USN"}, "currency"),
    ("fund code BOV", {"currency": "BOV"}, "currency"),
    ("unit of account UYW", {"currency": "UYW"}, "currency"),
    ("unknown gateway", {"gateway": "paypal"}, "gateway"),
    ("window too short", {"expires_in_seconds": 1}, "expires_in_seconds"),
    ("window too long", {"expires_in_seconds": 10**7}, "expires_in_seconds"),
    ("bad order id", {"order_id": "../etc/passwd"}, "order_id"),
    ("missing customer", {"customer_id": None}, "customer_id"),
    ("unknown field", {"coupon": "FREE"}, "coupon"),
    ("bad return url", {"return_url": "javascript:alert(1)"}, "return_url"),
    ("NUL in customer id", {"customer_id": "a\u0000b"}, "customer_id"),
    ("control character in title", {"items": [item(title="Py\u0007thon")]}, "items[0].title"),
    ("blank customer id", {"customer_id": "   "}, "customer_id"),
    ("bidi override in customer id", {"customer_id": "cus_\u202egnp.exe"}, "customer_id"),
    ("line separator in title", {"items": [item(title="Py\u2028thon")]}, "items[0].title"),
    ("paragraph separator in title", {"items": [item(title="Py\u2029thon")]}, "items[0].title"),
    ("NEL in title", {"items": [item(title="Py\u0085thon")]}, "items[0].title"),
    ("bidi isolate in title", {"items": [item(title="Py\u2067thon")]}, "items[0].title"),
    ("zero window", {"expires_in_seconds": 0}, "expires_in_seconds"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_invalid_checkout_is_refused_naming_the_field(stack, unchanged, case, change, field):
    body = {k: v for k, v in {**checkout_body(), **change}.items() if v is not None}
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"] == "urn:kassa:problem:validation-error"
    assert problem["field"] == field
    assert field in [e["field"] for e in problem["errors"]]


async def test_a_huge_currency_is_not_echoed(stack, unchanged):
    huge = "A" * 10_000
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts",
            json=checkout_body(currency=huge),
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 422, response.text[:500]
    assert response.json()["field"] == "currency"
    assert "A" * 20 not in response.text and len(response.text) < 1000


async def test_missing_api_key_is_401(stack, unchanged):
    async with stack.http(key="") as api:
        response = await api.post(
            "/v1/checkouts", json=checkout_body(), headers={"Idempotency-Key": "k1"}
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["field"] == "Authorization"


async def test_wrong_api_key_is_401(stack, unchanged):
    async with stack.http(key="sk_live_guess") as api:
        response = await api.get("/v1/orders/anything")
    assert response.status_code == 401


async def test_missing_idempotency_key_is_400(stack, unchanged):
    async with stack.http() as api:
        response = await api.post("/v1/checkouts", json=checkout_body())
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"


async def test_malformed_json_is_400(stack, unchanged):
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts",
            content=b'{"customer_id": "c1", "items": [',
            headers={"Idempotency-Key": "k2", "Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:kassa:problem:malformed-json"
    assert response.json()["field"] == "body"


async def test_a_number_too_long_to_read_is_400(stack, unchanged):
    body = json.dumps(checkout_body()).replace('"quantity": 1', '"quantity": ' + "9" * 5000)
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts",
            content=body.encode(),
            headers={"Idempotency-Key": "k5", "Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["field"] == "body"


async def test_oversize_body_is_413(stack, unchanged):
    huge = checkout_body(customer_id="c" * (stack.settings.max_body_bytes + 1))
    async with stack.http() as api:
        declared = await api.post("/v1/checkouts", json=huge, headers={"Idempotency-Key": "k3"})

        async def chunks():  # no Content-Length: the limit must still hold while streaming
            data = json.dumps(huge).encode()
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]

        streamed = await api.post(
            "/v1/checkouts",
            content=chunks(),
            headers={"Idempotency-Key": "k4", "Content-Type": "application/json"},
        )
    assert declared.status_code == streamed.status_code == 413
    assert streamed.json()["field"] == "body"


@pytest.mark.parametrize("order_id", ["a%00b", "x" * 65, "semi;colon"])
async def test_impossible_ids_in_paths_are_refused_naming_them(stack, unchanged, order_id):
    async with stack.http() as api:
        answers = [
            await api.get(f"/v1/orders/{order_id}"),
            await api.post(
                f"/v1/orders/{order_id}/refunds",
                json={},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            ),
            await api.get(f"/v1/refunds/{order_id}"),
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] in ("order_id", "refund_id")


async def test_a_method_a_path_does_not_take_is_405_with_allow(stack, unchanged):
    async with stack.http() as api:
        answers = [
            await api.delete("/v1/checkouts"),
            await api.put(f"/v1/orders/{uuid.uuid4().hex}/cancel", json={}),
            await api.patch(f"/v1/orders/{uuid.uuid4().hex}"),
        ]
    for answer, allowed in zip(answers, ["POST", "POST", "GET"], strict=True):
        assert answer.status_code == 405, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "urn:kassa:problem:method-not-allowed"
        assert answer.headers["allow"] == allowed


async def test_unknown_order_is_404(stack, unchanged):
    async with stack.http() as api:
        response = await api.get("/v1/orders/ord_missing")
        cancel = await api.post("/v1/orders/ord_missing/cancel")
    assert response.status_code == cancel.status_code == 404
    assert response.json()["field"] == "order_id"


def callback(order_id: str = "ord_x", **data) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment.succeeded",
            "data": {
                "id": "pay_x",
                "merchant_order_id": order_id,
                "status": "succeeded",
                "amount": 1,
                "currency": "CNY",
                **data,
            },
        }
    ).encode()


async def post_signed(stack, body: bytes):
    signature = sandbox_protocol.sign(
        stack.settings.sandbox_webhook_secrets[0].get_secret_value(), body
    )
    async with stack.http(key="") as api:
        return await api.post(
            "/v1/webhooks/sandbox",
            content=body,
            headers={sandbox_protocol.SIGNATURE_HEADER: signature},
        )


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "t=1,v1=00",
        "garbage",
        sandbox_protocol.sign("not-the-secret", callback()),
    ],
    ids=["missing", "stale and wrong", "malformed", "wrong secret"],
)
async def test_forged_callback_is_401_and_changes_nothing(stack, unchanged, signature):
    headers = {"Content-Type": "application/json"}
    if signature:
        headers[sandbox_protocol.SIGNATURE_HEADER] = signature
    async with stack.http(key="") as api:
        response = await api.post("/v1/webhooks/sandbox", content=callback(), headers=headers)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:kassa:problem:invalid-signature"


async def test_a_non_ascii_signature_is_401(stack, unchanged):
    body = callback()
    signature = sandbox_protocol.sign(
        stack.settings.sandbox_webhook_secrets[0].get_secret_value(), body
    )
    async with stack.http(key="") as api:
        response = await api.post(
            "/v1/webhooks/sandbox",
            content=body,
            headers={sandbox_protocol.SIGNATURE_HEADER: (signature[:-1] + "é").encode()},
        )
    assert response.status_code == 401, response.text
    assert response.json()["type"] == "urn:kassa:problem:invalid-signature"
    assert response.json()["field"] == "signature"


async def test_absurd_signature_timestamp_is_401(stack, unchanged):
    async with stack.http(key="") as api:
        response = await api.post(
            "/v1/webhooks/sandbox",
            content=callback(),
            headers={sandbox_protocol.SIGNATURE_HEADER: "t=" + "9" * 400 + ",v1=00"},
        )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_1", "type": 5, "data": {}}',
        b'{"id": "evt_1", "type": "payment.succeeded", "data": {"id": "p", '
        b'"merchant_order_id": "o", "status": "succeeded", "amount": 1e400, "currency": "CNY"}}',
        b'{"id": "evt_1", "type": "payment.succeeded", "data": {"id": "p", '
        b'"merchant_order_id": "' + b"o" * 65 + b'", "status": "succeeded", "amount": 1, '
        b'"currency": "CNY"}}',
        b"not json at all",
        callback(amount=0),
        callback(order_id="ord_\u0000x"),
    ],
    ids=[
        "type not a string",
        "amount not an integer",
        "order id too long",
        "not json",
        "amount zero",
        "NUL in the reference",
    ],
)
async def test_signed_but_unreadable_callback_is_400(stack, unchanged, body):
    signature = sandbox_protocol.sign(
        stack.settings.sandbox_webhook_secrets[0].get_secret_value(), body
    )
    async with stack.http(key="") as api:
        response = await api.post(
            "/v1/webhooks/sandbox",
            content=body,
            headers={sandbox_protocol.SIGNATURE_HEADER: signature},
        )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:kassa:problem:malformed-callback"


async def test_replayed_old_callback_is_401(stack, unchanged):
    body = callback()
    old = sandbox_protocol.sign(
        stack.settings.sandbox_webhook_secrets[0].get_secret_value(), body, timestamp=10**9
    )
    async with stack.http(key="") as api:
        response = await api.post(
            "/v1/webhooks/sandbox", content=body, headers={sandbox_protocol.SIGNATURE_HEADER: old}
        )
    assert response.status_code == 401
    assert "tolerance" in response.json()["detail"]


@pytest.mark.parametrize(
    "data",
    [{"description": "Python\u0000101"}, {"id": "pay_\u0000x"}, {"\u0000": 1}],
    ids=["in another field", "in the payment id", "in a key"],
)
async def test_a_signed_callback_with_nul_for_a_real_payment_is_400(stack, sessions, data):
    async with stack.http() as api:
        started = await api.post(
            "/v1/checkouts", json=checkout_body(), headers={"Idempotency-Key": uuid.uuid4().hex}
        )
    assert started.status_code == 201, started.text
    order_id = started.json()["order_id"]
    before = await count_rows(sessions)
    for _ in range(2):  # every delivery: a 400, never a 500
        response = await post_signed(stack, callback(order_id, amount=29700, **data))
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "urn:kassa:problem:malformed-callback"
        assert response.json()["field"] == "body"
    assert await count_rows(sessions) == before


FREE_TEXT = ["a\u202eb", "a\u2028b", "a\u2029b", "a\u0085b"]


@pytest.mark.parametrize("text", FREE_TEXT, ids=["RLO", "LS", "PS", "NEL"])
async def test_bidi_controls_and_separators_in_reasons_and_notes_are_refused(
    stack, unchanged, text
):
    order_id = f"ord_{uuid.uuid4().hex}"
    async with stack.http() as api:
        refund = await api.post(
            f"/v1/orders/{order_id}/refunds",
            json={"reason": text},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        cancel = await api.post(f"/v1/orders/{order_id}/cancel", json={"reason": text})
    async with stack.http(key=DEV_SUPPORT_KEY) as support:
        review = await support.post(f"/v1/orders/{order_id}/review", json={"note": text})
    for answer, field in [(refund, "reason"), (cancel, "reason"), (review, "note")]:
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field


async def an_old_order(sessions, body: dict, status: OrderStatus) -> str:
    """An order the database remembers but Temporal no longer does (retention has passed)."""
    order_id = f"ord_{uuid.uuid4().hex}"
    checkout = CheckoutIn.model_validate({**body, "order_id": order_id}).to_checkout_input(
        order_id, 900, Settings()
    )
    async with sessions.begin() as session:
        await orders.create(session, checkout)
        await session.execute(update(Order).where(Order.order_id == order_id).values(status=status))
    return order_id


async def no_workflow(stack, order_id: str) -> bool:
    try:
        await stack.temporal.get_workflow_handle(checkout_workflow_id(order_id)).describe()
    except RPCError as err:
        return err.status == RPCStatusCode.NOT_FOUND
    return False


async def test_an_old_order_id_with_other_contents_is_409_before_anything_starts(
    stack, sessions, sandbox
):
    order_id = await an_old_order(sessions, checkout_body(), OrderStatus.EXPIRED)
    before = (await count_rows(sessions), len(sandbox.payments))
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts",
            json=checkout_body(order_id=order_id),  # another customer
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "urn:kassa:problem:order-id-conflict"
    assert response.json()["field"] == "order_id"
    assert (await count_rows(sessions), len(sandbox.payments)) == before
    assert await no_workflow(stack, order_id)


async def test_an_old_order_id_with_the_same_contents_answers_the_stored_order(
    stack, sessions, sandbox
):
    body = checkout_body()
    order_id = await an_old_order(sessions, body, OrderStatus.EXPIRED)
    payments = len(sandbox.payments)
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts",
            json={**body, "order_id": order_id},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 201, response.text
    assert (response.json()["order_id"], response.json()["status"]) == (order_id, "expired")
    assert len(sandbox.payments) == payments
    assert await no_workflow(stack, order_id)


async def test_an_unknown_gateway_is_not_echoed(stack, unchanged):
    async with stack.http(key="") as api:
        response = await api.post("/v1/webhooks/evil<b>gateway", content=b"{}")
    assert response.status_code == 404, response.text
    problem = response.json()
    assert (problem["type"], problem["field"]) == ("urn:kassa:problem:unknown-gateway", "gateway")
    assert "evil" not in response.text and "<b>" not in response.text
    assert problem["detail"] == "Callbacks are taken for: alipay, sandbox"


def alipay_notify(alipay, order_id: str, signed: bool = True, **change) -> bytes:
    """A TRADE_SUCCESS notify for the order's first payment, as Alipay would send it (signed
    with the emulator's gateway key), with `change` made before signing."""
    keys = alipay.state.keys
    params = {
        "notify_type": "trade_status_sync",
        "notify_id": uuid.uuid4().hex,
        "app_id": keys.app_id,
        "out_trade_no": alipay_protocol.out_trade_no(order_id, 1),
        "trade_no": "2026113022001400000000000001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "297.00",
        "subject": "Python 101",
        **change,
    }
    params = alipay_protocol.sign_notify(params, keys.gateway_private)
    if not signed:
        params["sign"] = "bm90IGEgc2lnbmF0dXJl"
    return urlencode(params).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"notify_id": "n\u0000tify"},
        {"trade_no": "2026113022001400000000000\u00001"},
        {"subject": "Python\u0000101"},
        {"\u0000": "1"},
        {"out_biz_no": "rf_\u0000x"},  # a refund notice
    ],
    ids=["in the notify id", "in the trade number", "in another field", "as a key", "refund"],
)
async def test_a_signed_alipay_notify_with_nul_is_400_never_500(stack, sessions, alipay, change):
    async with stack.http() as api:
        started = await api.post(
            "/v1/checkouts",
            json=checkout_body(gateway="alipay"),
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    assert started.status_code == 201, started.text
    order_id = started.json()["order_id"]
    before = await count_rows(sessions)
    async with stack.http(key="") as gateway:
        forged = await gateway.post(
            "/v1/webhooks/alipay",
            content=alipay_notify(alipay, order_id, signed=False, **change),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answers = [  # every delivery: a 400, never a 500
            await gateway.post(
                "/v1/webhooks/alipay",
                content=alipay_notify(alipay, order_id, **change),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            for _ in range(2)
        ]
    assert forged.status_code == 401, forged.text
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "urn:kassa:problem:malformed-callback"
        assert answer.json()["field"] == "body"
    assert await count_rows(sessions) == before
    async with stack.http() as api:
        assert (await api.get(f"/v1/orders/{order_id}")).json()["status"] == "awaiting_payment"
