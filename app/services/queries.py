"""What a user reads: one transfer, their history, one batch; another user's look exactly like missing ones."""

from __future__ import annotations

from app.domain.batch import BatchView
from app.domain.errors import NotFound
from app.domain.transfer import Status, Transfer
from app.ports.store import HistoryPage
from app.services.dependencies import Dependencies


class TransferQueries:
    def __init__(self, deps: Dependencies) -> None:
        self.deps = deps

    def get_for_user(self, user_id: int, request_id: int) -> Transfer:
        transfer = self.deps.transfers.get(request_id)
        if transfer is None or transfer.user_id != user_id:
            raise NotFound("no such transfer")
        return transfer

    def history(
        self,
        user_id: int,
        limit: int,
        cursor: str | None,
        status: Status | None,
        asset: str | None,
    ) -> HistoryPage:
        if asset is not None:
            asset = self.deps.catalog.get(asset).symbol
        return self.deps.transfers.history(user_id, limit, cursor, status, asset)

    def batch_for_user(self, user_id: int, batch_id: int) -> BatchView:
        batch = self.deps.batches.get_batch(batch_id)
        if batch is None or batch.user_id != user_id:
            raise NotFound("no such batch")
        found = self.deps.transfers.get_many(batch.request_ids)
        return BatchView(batch, [found.get(i) for i in batch.request_ids])
