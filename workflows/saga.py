"""Compensation as a small, visible pattern: register a step's undo right before the step
runs; if a later step fails for good, the undos run in reverse order.

    saga = Saga()
    saga.add("revoke access", lambda reason: db_step(Entitlements.revoke, order, "revoke"))
    await db_step(Entitlements.grant, order, "grant access")
    ...
    except FailureError as err:  # local activities fail with their ApplicationError
        await saga.compensate(reason)

An undo must be idempotent and must tolerate that its step never ran (the step may have
failed before doing anything), which every activity here is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

Undo = Callable[[str], Awaitable[object]]


class Saga:
    def __init__(self) -> None:
        self._undos: list[tuple[str, Undo]] = []

    def add(self, description: str, undo: Undo) -> None:
        self._undos.append((description, undo))

    async def compensate(self, reason: str) -> list[str]:
        """Run every registered undo, last first; returns what was undone, in that order."""
        done = []
        for description, undo in reversed(self._undos):
            workflow.set_current_details(f"Compensating ({reason}): {description}")
            await undo(reason)
            done.append(description)
        return done
