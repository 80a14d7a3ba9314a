"""Alipay's wire protocol, pure: signatures, the response envelope, amounts, subjects and
merchant references."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways import alipay_protocol as protocol


@cache
def keys():
    key = protocol.new_private_key()
    return key, key.public_key()


# ---- signatures --------------------------------------------------------------------------------


def test_the_signed_content_is_sorted_raw_and_skips_empty_values_and_sign():
    params = {"b": "2", "a": "x y&z", "sign": "s", "empty": "", "sign_type": "RSA2"}
    assert protocol.sign_content(params, ("sign",)) == b"a=x y&z&b=2&sign_type=RSA2"
    assert protocol.sign_content(params, ("sign", "sign_type")) == b"a=x y&z&b=2"


def test_a_request_signature_covers_sign_type_and_detects_tampering():
    private, public = keys()
    signed = protocol.sign_request({"method": "alipay.trade.query", "biz_content": "{}"}, private)
    assert signed["sign_type"] == "RSA2"
    assert protocol.verify_request(signed, public)
    assert not protocol.verify_request({**signed, "biz_content": '{"a":1}'}, public)
    assert not protocol.verify_request({**signed, "sign_type": "RSA"}, public)
    assert not protocol.verify_request({k: v for k, v in signed.items() if k != "sign"}, public)
    other = protocol.new_private_key()
    assert not protocol.verify_request(protocol.sign_request(signed, other), public)


def test_a_notify_signature_leaves_out_sign_and_sign_type():
    private, public = keys()
    notify = protocol.sign_notify({"out_trade_no": "o1", "total_amount": "1.00"}, private)
    expected = protocol.rsa2_sign(private, b"out_trade_no=o1&total_amount=1.00")
    assert notify["sign"] == expected
    protocol.verify_notify(notify, public)
    with pytest.raises(ValueError, match="does not verify"):
        protocol.verify_notify({**notify, "total_amount": "100.00"}, public)
    with pytest.raises(ValueError, match="not signed"):
        protocol.verify_notify({**notify, "sign": ""}, public)
    with pytest.raises(ValueError, match="sign_type"):
        protocol.verify_notify({**notify, "sign_type": "RSA"}, public)
    assert not protocol.rsa2_verify(public, b"x", "not base64!")


# ---- the response envelope ----------------------------------------------------------------------


def test_a_response_is_verified_over_the_exact_bytes_received():
    private, public = keys()
    content = {"code": "10000", "msg": "Success", "subject": "课程 {x}", "n": "1.00"}
    body = protocol.response_body("alipay.trade.query", content, private)
    assert body.startswith(b'{"alipay_trade_query_response":{"code":"10000"')
    assert protocol.open_response("alipay.trade.query", body, public) == (content, True)

    # Alipay's own spacing and key order, signed as sent: a re-serialization would not verify.
    inner = '{ "msg" : "Success",  "code":"10000", "s":"\\u8bfe" }'
    sign = protocol.rsa2_sign(private, inner.encode())
    odd = f'{{ "alipay_trade_query_response" : {inner} , "sign" : "{sign}" }}'.encode()
    assert protocol.open_response("alipay.trade.query", odd, public)[0]["s"] == "课"

    tampered = body.replace(b'"n":"1.00"', b'"n":"9.00"')
    with pytest.raises(protocol.ResponseError, match="does not verify"):
        protocol.open_response("alipay.trade.query", tampered, public)


def test_an_unsigned_error_response_is_returned_as_unsigned():
    _, public = keys()
    content = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"}
    body = protocol.response_body("alipay.trade.close", content, None)
    assert protocol.open_response("alipay.trade.close", body, public) == (content, False)
    error = json.dumps({"error_response": content, "sign": ""}).encode()
    assert protocol.open_response("alipay.trade.close", error, public) == (content, False)
    for junk in (b"<html>", b"[]", b'{"other_response":{}}', b'{"a":1} x'):
        with pytest.raises(protocol.ResponseError):
            protocol.open_response("alipay.trade.close", junk, public)


# ---- amounts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "yuan"), [(1, "0.01"), (10, "0.10"), (8888, "88.88"), (19900, "199.00")]
)
def test_amounts_convert_exactly(fen, yuan):
    assert protocol.to_yuan(fen, "CNY") == yuan
    assert protocol.from_yuan(yuan) == fen


def test_amounts_outside_alipays_rules_are_refused():
    assert protocol.from_yuan("88.8") == 8880
    assert protocol.from_yuan("88") == 8800
    for bad in ("88.888", "-1.00", "1e3", "0x10", " 1.00", "1,00", "", "01.00", "NaN", 1.5):
        with pytest.raises(ValueError):
            protocol.from_yuan(bad)
    for amount, currency in ((100, "USD"), (100, "cny"), (0, "CNY"), (10**10 + 1, "CNY")):
        with pytest.raises(ValueError):
            protocol.to_yuan(amount, currency)
    with pytest.raises(ValueError):
        protocol.to_yuan(True, "CNY")
    with pytest.raises(ValueError):
        protocol.to_yuan(1.0, "CNY")


@given(st.integers(min_value=protocol.MIN_AMOUNT, max_value=protocol.MAX_AMOUNT))
def test_every_amount_round_trips(fen):
    yuan = protocol.to_yuan(fen, "CNY")
    assert protocol.from_yuan(yuan) == fen
    assert len(yuan.rpartition(".")[2]) == 2


# ---- subjects ----------------------------------------------------------------------------------


def test_a_five_item_cart_with_long_titles_makes_a_valid_subject():
    titles = [
        f"Advanced course {n}: " + "very long title / with = and & {braces} " * 8 for n in range(5)
    ]
    subject = protocol.clean_subject(", ".join(f"1 × {t}" for t in titles))
    assert protocol.subject_is_valid(subject)
    assert len(subject) == protocol.SUBJECT_MAX
    assert subject.endswith("…")


def test_a_subject_is_cleaned_not_refused():
    assert (
        protocol.clean_subject("  Python\n101\t/ 入门 = 课程 & more  ")
        == "Python 101 入门 课程 more"
    )
    assert protocol.clean_subject("\x00\u2028 ") == "Order"
    assert protocol.clean_subject("ok") == "ok"


@given(st.text(max_size=600))
def test_any_text_makes_a_valid_subject(text):
    assert protocol.subject_is_valid(protocol.clean_subject(text))


# ---- merchant references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_id", "attempt", "reference"),
    [
        ("demo1001", 1, "demo1001"),
        ("demo-1001", 2, "demo_h1001_a2"),
        ("ord_ab.c:d", 1, "ord__ab_dc_cd"),
        ("x_a2", 1, "x__a2"),
        ("x_a2", 3, "x__a2_a3"),
    ],
)
def test_references_escape_what_alipay_refuses(order_id, attempt, reference):
    assert protocol.out_trade_no(order_id, attempt) == reference
    assert protocol.order_of_out_trade_no(reference) == (order_id, attempt)


def test_a_reference_that_cannot_fit_is_hashed_deterministically():
    order_id = "a.b" * 21 + "c"  # 64 characters, 85 once its dots are escaped
    reference = protocol.out_trade_no(order_id, 1)
    assert len(reference) == 64 and protocol.is_hashed(reference)
    assert protocol.OUT_TRADE_NO_PATTERN.match(reference)
    assert reference == protocol.out_trade_no(order_id, 1)
    assert reference != protocol.out_trade_no(order_id, 2)
    assert protocol.order_of_out_trade_no(reference) is None
    assert protocol.out_trade_no("a" * 64, 1) == "a" * 64  # fits: kept as it is
    assert protocol.is_hashed(protocol.out_trade_no("a" * 64, 2))


@pytest.mark.parametrize("reference", ["x_", "x_q", "x_a1", "x_a02", "x_a", "a-b", "", "x_a2_a3"])
def test_references_kassa_never_makes_are_not_decoded(reference):
    assert protocol.order_of_out_trade_no(reference) is None


def test_bad_order_ids_and_attempts_are_refused():
    for order_id, attempt in (("a~2", 1), ("", 1), ("a" * 65, 1), ("a", 0), ("a", True)):
        with pytest.raises(ValueError):
            protocol.out_trade_no(order_id, attempt)


ORDER_IDS = st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=64)


@given(ORDER_IDS, st.integers(min_value=1, max_value=10**6))
def test_every_reference_is_valid_and_round_trips_unless_hashed(order_id, attempt):
    reference = protocol.out_trade_no(order_id, attempt)
    assert protocol.OUT_TRADE_NO_PATTERN.match(reference)
    assert reference == protocol.out_trade_no(order_id, attempt)
    if protocol.is_hashed(reference):
        assert protocol.order_of_out_trade_no(reference) is None
    else:
        assert protocol.order_of_out_trade_no(reference) == (order_id, attempt)


@given(ORDER_IDS, st.integers(1, 50), ORDER_IDS, st.integers(1, 50))
def test_different_payments_get_different_references(id1, attempt1, id2, attempt2):
    if (id1, attempt1) != (id2, attempt2):
        assert protocol.out_trade_no(id1, attempt1) != protocol.out_trade_no(id2, attempt2)


# ---- times -------------------------------------------------------------------------------------


def test_times_are_beijing_time_to_the_second():
    moment = datetime(2026, 11, 23, 16, 30, 5, 900_000, tzinfo=UTC)
    assert protocol.format_time(moment) == "2026-11-24 00:30:05"
    assert protocol.parse_time("2026-11-24 00:30:05") == moment.replace(microsecond=0)
    assert protocol.parse_time("2026-11-24 00:30") == moment.replace(second=0, microsecond=0)
    with pytest.raises(ValueError):
        protocol.format_time(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        protocol.parse_time("2026-11-24T00:30:05Z")


def test_timeout_express():
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 18:00 in Beijing
    assert protocol.parse_timeout_express("90m", start) == start + timedelta(minutes=90)
    assert protocol.parse_timeout_express("2h", start) == start + timedelta(hours=2)
    assert protocol.parse_timeout_express("15d", start) == start + timedelta(days=15)
    assert protocol.parse_timeout_express("1c", start) == datetime(2026, 11, 23, 16, tzinfo=UTC)
    for bad in ("1.5h", "16d", "0m", "m", "", "10s"):
        with pytest.raises(ValueError):
            protocol.parse_timeout_express(bad, start)
