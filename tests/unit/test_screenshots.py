"""`make screenshots` (tooling/screenshots.py) is a generator, not a test; these check, without
starting anything, that its mix shows what docs/support.md says and its queries name only
search attributes that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kassa.search import DECLINED_MAY_RETRY, SEARCH_ATTRIBUTES, NeedsAttention
from kassa.settings import Settings
from kassa.statuses import OrderStatus, RefundKind, RefundStatus, StrayKind
from tooling import screenshots
from tooling.support import ATTENTION_QUERY

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
    values = {
        str(v) for v in (*OrderStatus, *RefundStatus, *RefundKind, *StrayKind, *NeedsAttention)
    } | {DECLINED_MAY_RETRY}
    for query in QUERIES:
        names = set(re.findall(r"(\w+)\s*(?:=|!=|<|>|\bIN\b|\bIS\b)", query))
        assert names and names <= ours | BUILT_IN, query
        # Kassa's values: `PaymentStatus = 'x'` or `RefundKind IN ('x', 'y')`.
        ours_compared = (
            r"(?:PaymentStatus|RefundStatus|RefundKind|NeedsAttention)"
            r"\s*(?:=\s*'\w+'|IN\s*\([^)]*\))"
        )
        for compared in re.findall(ours_compared, query):
            assert set(re.findall(r"'(\w+)'", compared)) <= values, compared


def test_the_saved_view_is_what_needs_attention():
    assert screenshots.NEEDS_SUPPORT == ATTENTION_QUERY  # the same as `kassa support stuck`
    added = set(screenshots.COLUMNS_ADDED)
    assert {"NeedsAttention", "Currency", "PaymentExpiresAt", "RefundKind"} <= added
    assert added <= {key.name for key in SEARCH_ATTRIBUTES}


def test_the_runbook_shows_every_screenshot():
    runbook = (ROOT / "docs" / "support.md").read_text()
    for shot in screenshots.SHOTS:
        assert (screenshots.OUT / shot.file).is_file(), f"make screenshots: {shot.file}"
        assert f"support/{shot.file}" in runbook, shot.file
    assert screenshots.NEEDS_SUPPORT in runbook
