"""`setup` and the ISM policy, against a stand-in for ISM's REST API (the local node has no
ISM: see README). What the real node without ISM does is in tests/integration/test_setup.py.
"""

import copy
import datetime as dt

import pytest
from opensearchpy import NotFoundError, TransportError

from ingest.config import OpsSettings
from ingest.ops import ism
from ingest.ops.audit import IndexRow, _ism
from ingest.ops.setup import _plan_policy, apply


class FakeIsm:
    """ISM's policy endpoints as documented: GET adds fields of its own and the sequence
    numbers; an update must name the sequence numbers it read."""

    def __init__(self, installed: bool = True) -> None:
        self.installed = installed
        self.policy: dict | None = None
        self.seq_no = 0
        self.calls: list[tuple[str, str]] = []
        self.explain: dict = {"total_managed_indices": 0}

    async def perform_request(self, method, path, params=None, body=None):
        self.calls.append((method, path))
        if not self.installed:
            raise TransportError(400, "no handler found for uri", {"error": "no handler found"})
        if path == ism.POLICIES:
            return {"policies": [], "total_policies": 0}
        if path.startswith(ism.POLICIES + "/falco-retention"):
            if method == "GET":
                if self.policy is None:
                    raise NotFoundError(404, "status_exception", "Policy not found")
                body = copy.deepcopy(self.policy)
                body.update(policy_id="falco-retention", last_updated_time=1, schema_version=21)
                body["ism_template"][0]["last_updated_time"] = 1
                for state in body["states"]:
                    for action in state["actions"]:
                        action.setdefault("retry", {"count": 3, "backoff": "exponential"})
                return {
                    "_id": "falco-retention",
                    "_seq_no": self.seq_no,
                    "_primary_term": 1,
                    "policy": body,
                }
            expected = f"?if_seq_no={self.seq_no}&if_primary_term=1"
            assert (self.policy is None) == (not path.endswith(expected)), path
            self.policy = copy.deepcopy(body["policy"])
            self.seq_no += 1
            return {}
        if method == "GET" and path.startswith("/_plugins/_ism/explain/"):
            return self.explain
        if method == "POST" and path.startswith("/_plugins/_ism/"):
            assert body == {"policy_id": "falco-retention"}
            return {"updated_indices": 0, "failures": False}
        raise AssertionError(f"unexpected {method} {path}")


class FakeClient:
    def __init__(self, transport):
        self.transport = transport


SETTINGS = OpsSettings()


async def test_created_then_in_sync_although_ism_adds_fields_of_its_own():
    fake = FakeIsm()
    client = FakeClient(fake)
    change, res = await _plan_policy(client, SETTINGS)
    assert (change.action, change.detail) == ("create", "missing")
    await apply(client, [(change, res)], "falco")
    assert ("POST", "/_plugins/_ism/add/falco-*") in fake.calls  # indices made before it
    assert not any("change_policy" in p for _, p in fake.calls)
    states = {s["name"]: s for s in fake.policy["states"]}
    assert states["hot"]["transitions"][0]["conditions"] == {"min_index_age": "365d"}
    change, _ = await _plan_policy(client, SETTINGS)
    assert (change.action, change.detail) == ("none", "in sync")


async def test_a_hand_made_change_is_drift_and_setup_moves_managed_indices_to_git():
    fake = FakeIsm()
    client = FakeClient(fake)
    await apply(client, [await _plan_policy(client, SETTINGS)], "falco")
    fake.policy["states"][0]["transitions"][0]["conditions"]["min_index_age"] = "30d"
    fake.seq_no += 1
    change, res = await _plan_policy(client, SETTINGS)
    assert change.action == "update"
    assert "states[0].transitions[0].conditions.min_index_age" in change.detail
    fake.calls.clear()
    await apply(client, [(change, res)], "falco")  # conditional on what it read
    assert [c for c in fake.calls if c[0] != "GET"] == [
        ("PUT", f"{ism.POLICIES}/falco-retention?if_seq_no=2&if_primary_term=1"),
        ("POST", "/_plugins/_ism/change_policy/falco-*"),
        ("POST", "/_plugins/_ism/add/falco-*"),
    ]
    assert (await _plan_policy(client, SETTINGS))[0].action == "none"


async def test_hot_retention_setting_renders_into_the_policy():
    settings = OpsSettings(hot_retention_days=400, archive_repository="vault")
    body = ism.policy_resource(settings).body["policy"]
    states = {s["name"]: s for s in body["states"]}
    assert states["hot"]["transitions"][0]["conditions"]["min_index_age"] == "400d"
    assert states["archive"]["actions"][0]["snapshot"]["repository"] == "vault"


async def test_without_ism_the_policy_is_skipped_and_nothing_is_sent():
    fake = FakeIsm(installed=False)
    client = FakeClient(fake)
    change, res = await _plan_policy(client, SETTINGS)
    assert change.action == "skip" and "not installed" in change.detail
    await apply(client, [(change, res)], "falco")
    assert fake.calls == [("GET", ism.POLICIES)]


@pytest.mark.parametrize(
    ("desired", "have", "where"),
    [
        ({"a": 1}, {"a": "1", "extra": 2}, []),
        ({"a": [{"b": 1}]}, {"a": [{"b": 2}]}, ["a[0].b"]),
        ({"a": [1, 2]}, {"a": [1]}, ["a"]),
        ({"a": {"b": 1}}, {"a": None}, ["a"]),
    ],
)
def test_differences_look_only_at_what_git_sets(desired, have, where):
    assert ism.differences(desired, have) == where


async def test_audit_reads_the_policy_in_force_and_each_index_state():
    fake = FakeIsm()
    client = FakeClient(fake)
    await apply(client, [await _plan_policy(client, SETTINGS)], "falco")
    day = dt.date(2026, 11, 20)
    rows = [IndexRow(f"falco-{d:%Y.%m.%d}", d, 6, None, None) for d in (day, day + dt.timedelta(1))]
    fake.explain = {
        rows[0].index: {"policy_id": "falco-retention", "state": {"name": "hot"}},
        rows[1].index: {"index.plugins.index_state_management.policy_id": None},
        "total_managed_indices": 1,
    }
    installed, policy, got = await _ism(client, SETTINGS, rows)
    assert installed and policy is not None
    assert (policy["id"], policy["states"], policy["differs_from_git"]) == (
        "falco-retention",
        ["hot", "archive", "delete"],
        [],
    )
    assert [(r.policy, r.state) for r in got] == [("falco-retention", "hot"), (None, None)]
    fake.policy["default_state"] = "archive"  # edited by hand
    _, policy, _ = await _ism(client, SETTINGS, rows)
    assert policy["differs_from_git"] == ["policy.default_state"]
