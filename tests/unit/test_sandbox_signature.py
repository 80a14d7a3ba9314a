import time

import pytest

from gateways.sandbox_protocol import sign, verify

BODY = b'{"id": "evt_1"}'


def test_a_signed_body_verifies():
    verify(["s1"], sign("s1", BODY), BODY, tolerance_seconds=300)


def test_any_configured_secret_verifies_while_rotating():
    verify(["new", "old"], sign("old", BODY), BODY, tolerance_seconds=300)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=abc", "malformed"),
        ("t=notanumber,v1=abc", "malformed"),
        (lambda: sign("s1", BODY)[:-1] + "é", "malformed"),  # not ASCII: no TypeError
        ("t=\u00b2,v1=abc", "malformed"),
        (lambda: sign("other", BODY), "does not match"),
        (lambda: sign("s1", BODY + b" "), "does not match"),
    ],
)
def test_anything_else_is_refused_saying_why(header, why):
    header = header() if callable(header) else header  # signed now, not at collection
    with pytest.raises(ValueError, match=why):
        verify(["s1"], header, BODY, tolerance_seconds=300)


@pytest.mark.parametrize("skew", [-400, 400])
def test_timestamps_outside_the_tolerance_are_refused(skew):
    header = sign("s1", BODY, timestamp=int(time.time()) + skew)
    with pytest.raises(ValueError, match="tolerance"):
        verify(["s1"], header, BODY, tolerance_seconds=300)
