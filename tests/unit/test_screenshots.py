"""`make screenshots` (tooling/screenshots.py) is a generator, not a test; these check, without
starting anything, that its mix shows what docs/support.md says and its queries name only
search attributes that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kassa.search import SEARCH_ATTRIBUTES
from kassa.settings import Settings
from kassa.statuses import OrderStatus, RefundStatus, StrayKind
from tooling import screenshots

ROOT = Path(__file__).resolve().parents[2]
# Temporal's own attributes the queries may use.
BUILT_IN = {"ExecutionStatus", "WorkflowType", "WorkflowId", "StartTime", "CloseTime"}
QUERIES = (screenshots.NEEDS_SUPPORT, screenshots.ALL_CHECKOUTS, screenshots.STRAYS)


def test_the_command_line():
    assert screenshots.parse_args([]).out == screenshots.OUT
    args = screenshots.parse_args(["--out", "/tmp/x", "--keep"])
    assert (args.out, args.keep) == (Path("/tmp/x"), True)
    with pytest.raises(SystemExit) as exited:
        screenshots.main(["--help"])
    assert exited.value.code == 0


def test_the_mix_has_every_case_the_runbook_shows():
    mix = screenshots.MIX
    assert len({p.order_id for p in mix}) == len(mix)
    assert len({p.customer_id for p in mix}) == len(mix)  # no velocity limit in the way
    buyers = {"pay", "nothing", "decline", "cancel", "pay_other", "pay_late"}
    assert {p.buyer for p in mix} == buyers
    assert {p.refund for p in mix} == {None, "refund", "failed_refund"}
    assert {p.expect for p in mix} <= set(OrderStatus)
    assert {"awaiting_payment", "on_hold", "cancelled", "refunded", "expired"} <= {
        p.expect for p in mix
    }
    # Each payment window fits the bounds the API enforces once the script lowers the minimum.
    assert all(
        screenshots.MIN_WINDOW_SECONDS <= p.expires_in_seconds <= Settings().expires_in_max
        for p in mix
    )
    assert all(p.paid_amount not in (None, p.amount) for p in mix if p.buyer == "pay_other")
    # A refund after the checkout ended leaves the checkout's PaymentStatus as it ended.
    assert all(p.payment_statuses == ("fulfilled",) for p in mix if p.refund)


def test_the_queries_name_only_attributes_that_exist():
    ours = {key.name for key in SEARCH_ATTRIBUTES}
    # after #10 attrs: a declined checkout's PaymentStatus becomes declined_may_retry.
    values = {str(s) for s in (*OrderStatus, *RefundStatus, *StrayKind)} | {"declined_may_retry"}
    for query in QUERIES:
        names = set(re.findall(r"(\w+)\s*(?:=|!=|<|>|\bIN\b)", query))
        assert names and names <= ours | BUILT_IN, query
        # Kassa's statuses: `PaymentStatus = 'x'` or `PaymentStatus IN ('x', 'y')`.
        ours_compared = r"(?:PaymentStatus|RefundStatus)\s*(?:=\s*'\w+'|IN\s*\([^)]*\))"
        for compared in re.findall(ours_compared, query):
            assert set(re.findall(r"'(\w+)'", compared)) <= values, compared


def test_the_runbook_shows_every_screenshot():
    runbook = (ROOT / "docs" / "support.md").read_text()
    for shot in screenshots.SHOTS:
        assert (screenshots.OUT / shot.file).is_file(), f"make screenshots: {shot.file}"
        assert f"support/{shot.file}" in runbook, shot.file
    assert screenshots.NEEDS_SUPPORT in runbook
