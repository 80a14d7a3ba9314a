"""The published OpenAPI says what the server enforces (tests/e2e/test_contract.py has
schemathesis hold the server to it): generated per app, from its settings."""

from __future__ import annotations

import iso4217
import pytest

from api.app import create_app
from gateways.emulators.alipay.keys import ensure_keys
from kassa.money import currency_exponent
from kassa.reasons import ReasonCode
from kassa.settings import Settings


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("no-alipay-keys"),  # the sandbox alone
        max_items=7,
        max_quantity=9,
        max_unit_amount=12345,
        expires_in_min=30,
        expires_in_max=600,
        expires_in_default=120,
    )
    return create_app(settings).openapi()


def operations(openapi: dict):
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_checkout_bounds_come_from_the_settings(openapi):
    checkout = openapi["components"]["schemas"]["CheckoutIn"]["properties"]
    item = openapi["components"]["schemas"]["LineItemIn"]["properties"]
    assert checkout["items"]["maxItems"] == 7
    assert (item["quantity"]["minimum"], item["quantity"]["maximum"]) == (1, 9)
    assert (item["unit_amount"]["exclusiveMinimum"], item["unit_amount"]["maximum"]) == (0, 12345)
    window = next(b for b in checkout["expires_in_seconds"]["anyOf"] if b["type"] == "integer")
    assert (window["minimum"], window["maximum"]) == (30, 600)
    assert "120 seconds" in checkout["expires_in_seconds"]["description"]
    assert checkout["gateway"]["enum"] == ["sandbox"]
    assert "anyOf" not in openapi["components"]["schemas"]["CheckoutIn"]  # any currency


def test_a_gateway_that_takes_cny_only_says_so(tmp_path):
    ensure_keys(tmp_path / "keys" / "alipay")  # with Alipay's keys, Kassa offers Alipay
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    checkout = schema["components"]["schemas"]["CheckoutIn"]
    assert checkout["properties"]["gateway"]["enum"] == ["alipay", "sandbox"]
    assert checkout["anyOf"] == [
        {"properties": {"gateway": {"const": "alipay"}, "currency": {"enum": ["CNY"]}}},
        {"properties": {"gateway": {"const": "sandbox"}}},
    ]


def test_the_currency_enum_is_what_the_server_accepts(openapi):
    enum = openapi["components"]["schemas"]["CheckoutIn"]["properties"]["currency"]["enum"]
    assert {"CNY", "USD", "JPY", "KWD"} <= set(enum) and "XAU" not in enum
    assert not {"CLF", "USN", "BOV"} & set(enum)  # funds
    for currency in iso4217.Currency:
        try:
            currency_exponent(currency.code)
        except ValueError:
            assert currency.code not in enum
        else:
            assert currency.code in enum


def test_idempotency_key_is_required_where_it_is(openapi):
    for name, operation in operations(openapi):
        keys = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        if name in ("POST /v1/checkouts", "POST /v1/orders/{order_id}/refunds"):
            assert keys and keys[0]["required"] and keys[0]["schema"]["maxLength"] == 255
            success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            assert "Idempotent-Replayed" in success["headers"]
            assert "idempotency-key-required" in operation["responses"]["400"]["description"]
        else:
            assert not keys, name


def test_every_problem_is_a_problem_with_its_headers(openapi):
    assert set(openapi["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
    }
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    for name, operation in operations(openapi):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], name
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
            if status == "503":
                assert response["headers"]["Retry-After"]["required"], name


def test_what_each_route_can_answer_for_its_shape(openapi):
    scheme = openapi["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for name, operation in operations(openapi):
        responses = operation["responses"]
        if name in ("GET /healthz", "POST /v1/webhooks/{gateway}"):  # no key asked
            assert "security" not in operation, name
            continue
        assert operation["security"] == [{"HTTPBearer": []}], name
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"], name
        assert "rate-limited" in responses["429"]["description"], name
        assert "validation-error" in responses["422"]["description"], name
        if "requestBody" in operation:
            assert "malformed-json" in responses["400"]["description"], name
            assert "body-too-large" in responses["413"]["description"], name
    webhook = dict(operations(openapi))["POST /v1/webhooks/{gateway}"]["responses"]
    assert sorted(webhook) == ["200", "400", "401", "404", "413", "429", "503"]
    assert "malformed-callback" in webhook["400"]["description"]
    assert "rate-limited" in webhook["429"]["description"]


def test_rate_limits_are_documented_with_retry_after(openapi):
    """Every route but the health check can answer 429, always with Retry-After."""
    for name, operation in operations(openapi):
        if name == "GET /healthz":
            continue
        limited = operation["responses"]["429"]
        assert limited["headers"]["Retry-After"]["required"], name
        assert limited["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }


def test_every_list_is_bounded(openapi):
    """Lists in answers say their maximum; the ledger comes a page at a time."""
    schemas = openapi["components"]["schemas"]
    assert schemas["OrderOut"]["properties"]["refunds"]["maxItems"] == 100
    assert "refunds_has_more" in schemas["OrderOut"]["properties"]
    assert schemas["LedgerPageOut"]["properties"]["transactions"]["maxItems"] == 100
    assert "has_more" in schemas["LedgerPageOut"]["required"]
    assert schemas["Problem"]["properties"]["errors"]["maxItems"] == 50
    ledger = dict(operations(openapi))["GET /v1/orders/{order_id}/ledger"]
    limit = next(p for p in ledger["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    for name, operation in operations(openapi):
        for status, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            assert schema.get("type") != "array", f"{name} {status}: a bare list"


def test_get_order_documents_can_retry(openapi):
    assert "can_retry" in openapi["components"]["schemas"]["OrderOut"]["properties"]


def test_reason_codes_are_published_as_one_enum(openapi):
    schemas = openapi["components"]["schemas"]
    assert schemas["ReasonCode"]["enum"] == [code.value for code in ReasonCode]
    code = {"anyOf": [{"$ref": "#/components/schemas/ReasonCode"}, {"type": "null"}]}
    for model, field in [
        ("CheckoutOut", "reason_code"),
        ("OrderOut", "reason_code"),
        ("RefundOut", "failure_code"),
    ]:
        assert {k: v for k, v in schemas[model]["properties"][field].items() if k in code} == code
    # The details are on support's route alone.
    assert "reason_detail" not in schemas["OrderOut"]["properties"]
    assert "reason_detail" in schemas["SupportOrderOut"]["properties"]
