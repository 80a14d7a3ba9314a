"""After the whole suite, the books must be right: the ledger check finds nothing."""

from __future__ import annotations

import httpx
import pytest_asyncio

from gateways import build_gateways
from tooling.ledger_check import check as ledger_check


@pytest_asyncio.fixture(scope="session", autouse=True)
async def ledger_audit(settings, sessions, sandbox):
    yield
    async with httpx.AsyncClient() as http:
        problems = await ledger_check(sessions, build_gateways(settings, http))
    assert problems == [], "the ledger check found violations:\n" + "\n".join(problems)
