"""The bus contract for batches: a batch request and its answer travel whole, on every bus."""

from __future__ import annotations

from app.domain.transfer import Outcome
from app.ports.bus import AnyEngineRequest, EngineBatchRequest, EngineLeg, EngineResult
from tests.conftest import random_request_id, random_user_id
from tests.contract.test_bus_contract import Recorder, a_request, consuming, wait_for
from tests.support.bus_kits import BusKit


def a_batch(user_id: int) -> EngineBatchRequest:
    return EngineBatchRequest(
        batch_id=random_request_id(),
        user_id=user_id,
        legs=(
            EngineLeg(random_request_id(), "USDT", "funding", "spot", 2**70),
            EngineLeg(random_request_id(), "BTC", "spot", "funding", 50_000_000),
        ),
        trace_id="batch-trace-1",
    )


def test_a_batch_request_reaches_the_engine_whole_and_in_the_users_order(buses: BusKit) -> None:
    service, engine = buses.service(), buses.engine()
    user_id = random_user_id()
    sent: list[AnyEngineRequest] = [a_request(user_id=user_id), a_batch(user_id), a_request(user_id=user_id)]
    received = Recorder()
    with consuming(engine.consume_requests, received):
        for request in sent:
            service.publish_request(request)
        assert wait_for(lambda: {r.request_id for r in sent} <= received.handled_ids())
    mine = [m for m in received.handled if getattr(m, "user_id", None) == user_id]
    assert mine == sent  # the batch is one message, of its own type, between the user's others


def test_a_batch_answer_reaches_settlement_as_a_batch(buses: BusKit) -> None:
    service, engine = buses.service(), buses.engine()
    sent = [EngineResult(random_request_id(), Outcome.REJECTED, "frozen", "t-1", batch=True)]
    received = Recorder()
    with consuming(service.consume_results, received):
        engine.publish_results(sent)
        assert wait_for(lambda: sent[0].request_id in received.handled_ids())
    found = [m for m in received.handled if getattr(m, "request_id", None) == sent[0].request_id]
    assert found == sent
