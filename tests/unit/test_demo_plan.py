"""`kassa demo` without a stack: the seeded mix, and the answer when no API runs."""

from __future__ import annotations

from tooling import demo


def test_the_same_seed_plans_the_same_purchases():
    first, second = demo.plan(40, 5, None), demo.plan(40, 5, None)
    assert [(p.scenario, p.body["items"]) for p in first] == [
        (p.scenario, p.body["items"]) for p in second
    ]
    # A fresh run tag: the same seed does not pile orders onto one customer.
    assert first[0].body["customer_id"] != second[0].body["customer_id"]
    for p in first:
        assert p.body["currency"] == "CNY" and "expires_in_seconds" not in p.body
        assert all(isinstance(i["unit_amount"], int) for i in p.body["items"])


def test_walked_away_purchases_get_the_short_window_and_must_expire():
    planned = demo.plan(60, 1, 60)
    away = [p for p in planned if p.scenario == "walked away"]
    assert away and all(p.body["expires_in_seconds"] == 60 for p in away)
    assert {p.expected for p in away} == {"expired"}
    assert all("expires_in_seconds" not in p.body for p in planned if p not in away)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert demo.percentile(values, 50) == 50 and demo.percentile(values, 95) == 95
    assert demo.percentile([3.0], 95) == 3.0 and demo.percentile([], 50) is None


def test_no_api_is_a_clear_error(capsys):
    assert demo.main("http://127.0.0.1:1", "sk", 2, 1, None, None) == 2
    assert "make run" in capsys.readouterr().out
