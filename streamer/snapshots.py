"""The REST snapshots: a key's orders, positions and newest batch, each with where its stream stands.

A snapshot's `last_event_id` is the key's head read from the broker before the
rows are read from the database, so a stream resumed from it misses nothing
written after the snapshot (it may repeat what the rows already show, never
skip). Without a broker there is no head to give: 503 bus_unavailable.
"""

from __future__ import annotations

from typing import Any

from bus.events import MAX_TEXT
from bus.topics import StreamKey
from streamer import batches, queries
from streamer.handlers import BaseHandler, bus_answer, parse_id
from web.errors import ApiError


class SnapshotHandler(BaseHandler):
    """`GET /api/orders|positions?strategy_id=N`: rows plus the key's head, read before the rows."""

    field = ""
    query: Any = None

    async def get(self) -> None:
        key = await self.readable_key()
        head = await self.key_head(key)
        found = await self.services.database.run(self.query, key.user_id, key.strategy_id)
        self.send_json({self.field: found, "last_event_id": head})

    async def key_head(self, key: StreamKey) -> str:
        """The key's head as an event id, read from the broker (before the database); 503 without one."""
        with bus_answer():
            return str(await self.services.hub.subscriber.head(key))


class OrdersHandler(SnapshotHandler):
    """`GET /api/orders?strategy_id=N[&limit=K][&before=<order_id>]`: a snapshot, or a page of history.

    Without `limit` and `before` the answer is the snapshot of the newest 1,000.
    With `limit` alone it is a snapshot of the newest K, with `has_more`. With
    `before` it is a page of history (the K orders created before that order):
    no `last_event_id` (not a place to stream from), so no broker is needed.
    """

    field = "orders"
    query = staticmethod(queries.orders_of)

    async def get(self) -> None:
        arguments = self.request.query_arguments
        if "limit" not in arguments and "before" not in arguments:
            await super().get()
            return
        key = await self.readable_key()
        limit, before = self._limit(), self._before()
        head = None if before is not None else await self.key_head(key)
        page = await self.services.database.run(queries.order_page, key.user_id, key.strategy_id, limit, before)
        if page is None:
            raise ApiError(400, "invalid_request", "before must be the order_id of one of your orders in this strategy.")
        answer: dict[str, Any] = {"orders": page.orders, "has_more": page.has_more}
        if head is not None:
            answer["last_event_id"] = head
        self.send_json(answer)

    def _limit(self) -> int:
        values = self.request.query_arguments.get("limit")
        if values is None:
            return queries.MAX_SNAPSHOT_ORDERS
        limit = parse_id(values[0]) if len(values) == 1 else None
        if limit is None or limit > queries.MAX_SNAPSHOT_ORDERS:
            raise ApiError(400, "invalid_request", f"limit must be one integer, 1 <= K <= {queries.MAX_SNAPSHOT_ORDERS}.")
        return limit

    def _before(self) -> str | None:
        values = self.request.query_arguments.get("before")
        if values is None:
            return None
        try:
            before = values[0].decode("utf-8") if len(values) == 1 else ""
        except UnicodeDecodeError:
            before = ""
        if not 1 <= len(before) <= MAX_TEXT:
            raise ApiError(400, "invalid_request", f"before must be one order_id, 1 to {MAX_TEXT} characters.")
        return before


class PositionsHandler(SnapshotHandler):
    """`GET /api/positions?strategy_id=N`."""

    field = "positions"
    query = staticmethod(queries.positions_of)


class LatestBatchHandler(BaseHandler):
    """`GET /api/batches/latest?strategy_id=N`: the key's newest batch summary in the broker's history."""

    async def get(self) -> None:
        key = await self.readable_key()
        with bus_answer():
            found = await batches.latest_batch(self.services.hub.subscriber, key)
        if found is None:
            self.send_json({"batch": None, "event_id": None})
        else:
            self.send_json({"batch": found.data, "event_id": found.event_id})
