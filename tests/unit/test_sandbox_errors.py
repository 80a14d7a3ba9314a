"""How the sandbox adapter reads the gateway's refusals (a fake transport, in addition to
the tests over real HTTP in tests/gateways): "not now" retries, "never" does not."""

import httpx
import pytest

from gateways.base import GatewayError
from gateways.sandbox import SandboxGateway
from kassa.errors import GatewayRejected


def gateway_answering(status: int) -> SandboxGateway:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json={"code": "x"}))
    return SandboxGateway(httpx.AsyncClient(transport=transport), "http://gw", "k", ["s"])


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
async def test_not_now_is_retried(status):
    with pytest.raises(GatewayError) as raised:
        await gateway_answering(status).get_payment("ord_1")
    assert not isinstance(raised.value, GatewayRejected)


@pytest.mark.parametrize("status", [400, 401, 404, 409])
async def test_never_is_permanent(status):
    with pytest.raises(GatewayRejected):
        await gateway_answering(status).get_payment("ord_1")


async def test_failed_calls_are_counted_by_gateway_call_and_kind():
    from prometheus_client import REGISTRY

    from gateways.metered import Metered

    def errors(kind: str) -> float:
        labels = {"gateway": "sandbox", "call": "get_payment", "kind": kind}
        return REGISTRY.get_sample_value("kassa_gateway_call_errors_total", labels) or 0.0

    def calls() -> float:
        labels = {"gateway": "sandbox", "call": "get_payment"}
        return REGISTRY.get_sample_value("kassa_gateway_call_seconds_count", labels) or 0.0

    before = errors("error"), errors("rejected"), calls()
    with pytest.raises(GatewayError):
        await Metered(gateway_answering(503)).get_payment("ord_1")
    with pytest.raises(GatewayRejected):
        await Metered(gateway_answering(404)).get_payment("ord_1")
    assert (errors("error"), errors("rejected"), calls()) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 2,
    )
    assert Metered(gateway_answering(200)).reference("o", 2) == "o~2"  # the rest, untouched
