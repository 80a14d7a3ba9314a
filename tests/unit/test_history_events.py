"""The history tools: decoding recorded histories (tests/history_events.py) and recording
them without ever overwriting one (tests/support.py record_history)."""

from __future__ import annotations

import pytest

from tests.history_events import (
    activity_types,
    child_workflow_types,
    load_history,
    local_activity_types,
    patch_ids,
)
from tests.support import HISTORIES, RECORD_HISTORIES, record_history

# A few facts about the checked-in histories, to prove the decoding finds what is there.
# Histories recorded again later may change them.


def test_local_activities_are_decoded_from_their_markers():
    fulfilled = load_history("checkout-fulfilled")
    assert {"grant_entitlements", "create_payment"} <= set(local_activity_types(fulfilled))
    expired = load_history("checkout-expired")
    assert "close_payment" not in local_activity_types(expired)  # a normal activity
    assert {"create_payment", "close_payment"} <= set(activity_types(expired))


def test_no_history_carries_a_patch_before_release():
    """Kassa is unreleased: the workflows carry no `workflow.patched` branches, and the
    histories are recorded from today's code (release 0.1 starts the versioned history)."""
    for path in HISTORIES.glob("*.json"):
        assert patch_ids(load_history(path.stem)) == [], path.stem


def test_child_workflows_are_listed():
    assert "RefundWorkflow" in child_workflow_types(load_history("checkout-compensated"))
    assert child_workflow_types(load_history("checkout-fulfilled")) == []


class FakeHandle:
    def __init__(self, text: str = '{"events": []}') -> None:
        self.text = text
        self.fetched = 0

    async def fetch_history(self):
        self.fetched += 1
        return self

    def to_json(self) -> str:
        return self.text


@pytest.mark.parametrize("value", ["", "checkout-other"])
async def test_nothing_is_recorded_unless_asked_for(tmp_path, monkeypatch, value):
    monkeypatch.setenv(RECORD_HISTORIES, value)
    handle = FakeHandle()
    await record_history(handle, "checkout-new", tmp_path)
    assert list(tmp_path.iterdir()) == [] and handle.fetched == 0


@pytest.mark.parametrize("value", ["checkout-new", "checkout-other, checkout-new", "all"])
async def test_a_missing_history_is_recorded_by_name_or_with_all(tmp_path, monkeypatch, value):
    monkeypatch.setenv(RECORD_HISTORIES, value)
    await record_history(FakeHandle('{"events": [1]}'), "checkout-new", tmp_path)
    assert (tmp_path / "checkout-new.json").read_text() == '{"events": [1]}'


async def test_an_existing_history_asked_for_by_name_fails_and_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(RECORD_HISTORIES, "checkout-old")
    (tmp_path / "checkout-old.json").write_text("recorded long ago")
    with pytest.raises(FileExistsError, match="delete it deliberately"):
        await record_history(FakeHandle(), "checkout-old", tmp_path)
    assert (tmp_path / "checkout-old.json").read_text() == "recorded long ago"


async def test_all_leaves_existing_histories_as_they_are(tmp_path, monkeypatch):
    monkeypatch.setenv(RECORD_HISTORIES, "all")
    (tmp_path / "checkout-old.json").write_text("recorded long ago")
    await record_history(FakeHandle(), "checkout-old", tmp_path)
    assert (tmp_path / "checkout-old.json").read_text() == "recorded long ago"


async def test_the_old_yes_no_switch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(RECORD_HISTORIES, "1")
    with pytest.raises(ValueError, match="by name"):
        await record_history(FakeHandle(), "checkout-new", tmp_path)
