"""Read a recorded workflow history by its events, not by its JSON text.

The JSON of a history holds every payload base64-encoded, so searching it for an activity
name or a patch id finds nothing, whether the step is there or not. These helpers decode:
the activities the workflow scheduled (local activities included: the SDK records each as a
`core_local_activity` marker whose payload names the activity), the patches it took
(`core_patch` markers) and the child workflows it started."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from orchestration.temporal import DATA_CONVERTER
from tests.support import HISTORIES

LOCAL_ACTIVITY_MARKER = "core_local_activity"  # details["data"]: {"activity_type": …, …}
PATCH_MARKER = "core_patch"  # details["patch-data"]: {"id": …, "deprecated": …}


def load_history(name_or_path: str | Path) -> WorkflowHistory:
    """A checked-in history by name ("checkout-fulfilled") or any history file by path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = HISTORIES / f"{name_or_path}.json"
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _marker_data(event: HistoryEvent, marker: str, key: str) -> list:
    """The decoded payloads under `key` of the event, if it is a `marker` marker."""
    if not event.HasField("marker_recorded_event_attributes"):
        return []
    attributes = event.marker_recorded_event_attributes
    if attributes.marker_name != marker or key not in attributes.details:
        return []
    return [
        DATA_CONVERTER.payload_converter.from_payload(payload)
        for payload in attributes.details[key].payloads
    ]


def _local_activity_types(event: HistoryEvent) -> list[str]:
    return [data["activity_type"] for data in _marker_data(event, LOCAL_ACTIVITY_MARKER, "data")]


def local_activity_types(history: WorkflowHistory) -> list[str]:
    """The local activities, in history order. A local activity is recorded when it ends
    (or when it waits out a long retry backoff: then once per such wait too)."""
    return [name for event in history.events for name in _local_activity_types(event)]


def activity_types(history: WorkflowHistory) -> list[str]:
    """Every activity the workflow scheduled, local ones included, in history order."""
    types = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            types.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        types.extend(_local_activity_types(event))
    return types


def patch_ids(history: WorkflowHistory) -> list[str]:
    """The ids of the `workflow.patched(...)` calls the workflow took, in history order."""
    return [
        data["id"]
        for event in history.events
        for data in _marker_data(event, PATCH_MARKER, "patch-data")
    ]


def child_workflow_types(history: WorkflowHistory) -> list[str]:
    """The types of the child workflows the workflow started, in history order."""
    return [
        event.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for event in history.events
        if event.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
