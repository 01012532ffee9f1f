"""A filtered history page on Cassandra costs a handful of queries, however long the user's history."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.adapters.cassandra_store import CassandraTransferStore
from app.domain.transfer import Status
from tests.conftest import make_transfer, random_request_id, random_user_id

NON_MATCHING = 2000
MOST_QUERIES = 5


class QueryCounter:
    """Counts every request the driver sends (its request-init listener sees each one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self, _response_future: Any) -> None:
        with self.lock:
            self.count += 1


def _fill(store: CassandraTransferStore, user_id: int, count: int) -> None:
    transfers = [make_transfer(user_id, 1, asset="BTC", request_id=random_request_id()) for _ in range(count)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(store.record_new, transfers))


def test_a_filtered_history_page_over_2000_non_matching_rows_costs_at_most_5_queries(
    cassandra_store: CassandraTransferStore,
) -> None:
    user_id = random_user_id()
    _fill(cassandra_store, user_id, NON_MATCHING)
    counter = QueryCounter()
    cassandra_store.db.connect().add_request_init_listener(counter)
    try:
        for filters in ({"status": Status.FAILED}, {"asset": "USDT"}, {"status": Status.SUCCESS, "asset": "BTC"}):
            counter.count = 0
            page = cassandra_store.history(user_id, 100, **filters)
            assert page.items == []
            assert page.next_cursor is not None  # the budget ran out before the history did
            assert counter.count <= MOST_QUERIES, (filters, counter.count)
    finally:
        cassandra_store.db.connect().remove_request_init_listener(counter)
