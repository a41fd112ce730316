"""`archive prune` on the ledger stops on an entry the node will not delete, instead of
finding it again page after page; an entry gone already (404) is not a failure."""

from __future__ import annotations

import datetime as dt

import pytest
from opensearchpy.exceptions import TransportError

from ingest.config import OpsSettings
from ingest.ops.archive import prune_ledger


class _Indices:
    async def exists(self, index):
        return True

    async def refresh(self, index):
        return {}


class Node:
    """Old ledger entries ``ids``; deleting answers ``status`` for each and removes it
    only when that is 200 or 404."""

    def __init__(self, ids, status):
        self.indices = _Indices()
        self.ids, self.status, self.bulks = list(ids), status, 0

    async def search(self, index, body):
        return {"hits": {"hits": [{"_id": i} for i in self.ids]}}

    async def bulk(self, body, refresh):
        self.bulks += 1
        items = [{"delete": {"_id": i, "status": self.status}} for i in self.ids]
        if self.status in (200, 404):
            self.ids = []
        return {"errors": self.status >= 300, "items": items}


async def test_an_entry_the_node_refuses_to_delete_stops_the_prune():
    node = Node(["a", "b"], 403)
    with pytest.raises(TransportError) as refused:
        await prune_ledger(node, OpsSettings(), dt.date(2030, 1, 1))  # type: ignore[arg-type]
    assert refused.value.status_code == 403 and node.bulks == 1


@pytest.mark.parametrize("status", [200, 404])
async def test_deleted_or_gone_entries_are_counted_and_the_prune_ends(status):
    node = Node(["a", "b"], status)
    assert await prune_ledger(node, OpsSettings(), dt.date(2030, 1, 1)) == 2  # type: ignore[arg-type]
    assert node.bulks == 1
