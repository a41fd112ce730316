"""`setup` and `audit` with the ISM policy, against a stand-in that answers as a real node
with index-management 2.19.0.0 did (tests/fixtures/ism/; the local node has no ISM: see
README). What the real node without ISM does is in tests/integration/test_setup.py.
"""

import datetime as dt

import pytest

from ingest.config import OpsSettings
from ingest.ops import ism
from ingest.ops.audit import IndexRow, _ism, findings
from ingest.ops.setup import REFUSED_EXIT, _plan_policy, apply, refusal_lines
from tests.unit.ism_fake import FakeClient, Index, RecordedIsm, recorded

SETTINGS = OpsSettings()
OURS = "falco-retention"


async def plan(client, settings=SETTINGS):
    return {c.action: c for c, _ in await _plan_policy(client, settings)}


async def setup(client, settings=SETTINGS):
    return await apply(client, await _plan_policy(client, settings), "falco")


def posts(fake):
    return [p for m, p in fake.calls if m in ("POST", "PUT")]


async def test_created_then_in_sync_although_ism_adds_fields_of_its_own():
    fake = RecordedIsm()
    fake.indices["falco-2026.11.20"] = Index()  # made before setup: no policy
    client = FakeClient(fake)
    changes = await plan(client)
    assert changes["create"].detail == "missing"
    assert changes["add"].detail == "1 without a policy: falco-2026.11.20"
    assert await setup(client) == []
    assert posts(fake) == [
        f"{ism.POLICIES}/{OURS}",
        "/_plugins/_ism/add/falco-2026.11.20",  # named, not a pattern
    ]
    fake.initialize()
    states = {s["name"]: s for s in fake.policies[OURS][0]["states"]}
    assert states["hot"]["transitions"][0]["conditions"] == {"min_index_age": "367d"}
    assert set(await plan(client)) == {"none"}


async def test_a_hand_made_change_is_drift_and_setup_moves_only_our_indices_to_git():
    fake = RecordedIsm()
    client = FakeClient(fake)
    await setup(client)
    fake.indices = {
        "falco-2026.11.26": Index(),
        "falco-2026.11.27": Index("falco-other"),  # a person's choice
        "falco-2026.11.28": Index(OURS),
    }
    fake.policies["falco-other"] = ({"states": []}, 1)
    fake.initialize()
    policy, seq_no = fake.policies[OURS]
    policy["states"][0]["transitions"][0]["conditions"]["min_index_age"] = "30d"
    fake.policies[OURS] = (policy, seq_no + 5)  # edited by hand
    changes = await plan(client)
    assert "states[0].transitions[0].conditions.min_index_age" in changes["update"].detail
    assert changes["move"].detail == f"1 on an earlier version of {OURS}: falco-2026.11.28"
    assert changes["keep"].detail.startswith("1 on another policy")
    assert "falco-2026.11.27 (falco-other)" in changes["keep"].detail
    fake.calls.clear()
    assert await setup(client) == []
    assert posts(fake) == [
        f"{ism.POLICIES}/{OURS}?if_seq_no={seq_no + 5}&if_primary_term=3",
        "/_plugins/_ism/add/falco-2026.11.26",
        "/_plugins/_ism/change_policy/falco-2026.11.28",
    ]
    assert fake.indices["falco-2026.11.27"].policy == "falco-other"  # not moved (issue 20, 3)
    assert fake.indices["falco-2026.11.28"].seq_no == fake.policies[OURS][1]
    fake.initialize()
    assert set(await plan(client)) == {"none", "keep"}


async def test_an_index_between_two_states_is_refused_and_named():
    """The node refuses change_policy while an index transitions (recorded 37): setup says
    which index and exits non-zero, and the plan still shows it on the old version."""
    fake = RecordedIsm()
    client = FakeClient(fake)
    await setup(client)
    fake.indices["falco-2026.11.25"] = Index(OURS)
    fake.initialize()
    fake.indices["falco-2026.11.25"].transitioning_to = "archive"
    settings = OpsSettings(hot_retention_days=400)
    refused = await setup(client, settings)
    assert refused == [
        ism.Refused("falco-2026.11.25", "Cannot change policy while transitioning to new state")
    ]
    lines, code = refusal_lines(refused)
    assert code == REFUSED_EXIT and lines[0] == (
        "refused ism_index falco-2026.11.25: Cannot change policy while transitioning to new state"
    )
    assert (await plan(client, settings))["move"].detail.endswith("falco-2026.11.25")
    fake.indices["falco-2026.11.25"].transitioning_to = None  # ISM moved on
    assert await setup(client, settings) == []
    assert set(await plan(client, settings)) == {"none"}


async def test_a_policy_update_on_a_prefix_without_indices_sends_no_pattern():
    """change_policy with a pattern that matches no index answers 400 (recorded 41): setup
    names indices, so with none it sends nothing after the PUT."""
    fake = RecordedIsm()
    client = FakeClient(fake)
    await setup(client)
    fake.calls.clear()
    assert await setup(client, OpsSettings(hot_retention_days=400)) == []
    assert [p.split("?")[0] for p in posts(fake)] == [f"{ism.POLICIES}/{OURS}"]
    assert await ism.explain(client, "falco") == {}  # the recorded 400 of explain


async def test_hot_retention_setting_renders_into_the_policy_and_its_description():
    settings = OpsSettings(hot_retention_days=400, archive_repository="vault")
    body = ism.policy_resource(settings).body["policy"]
    states = {s["name"]: s for s in body["states"]}
    assert states["hot"]["transitions"][0]["conditions"]["min_index_age"] == "402d"
    assert states["archive"]["actions"][0]["snapshot"]["repository"] == "vault"
    assert "at least 400 days" in body["description"] and "365" not in body["description"]


async def test_without_ism_the_policy_is_skipped_and_nothing_is_sent():
    fake = RecordedIsm(installed=False)
    client = FakeClient(fake)
    changes = await _plan_policy(client, SETTINGS)
    assert [(c.action, "not installed" in c.detail) for c, _ in changes] == [("skip", True)]
    assert await apply(client, changes, "falco") == []
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


class Answers:
    """A transport that answers explain with one recorded file (and nothing else)."""

    def __init__(self, explain: dict) -> None:
        self.explain = explain

    async def perform_request(self, method, path, params=None, body=None):
        assert path.startswith("/_plugins/_ism/explain/")
        return self.explain


async def test_explain_as_recorded_failing_snapshots_and_transitions():
    got = await ism.explain(FakeClient(Answers(recorded("80"))), "ismv880d")
    [e] = got.values()
    assert (e.policy_id, e.policy_seq_no, e.state, e.action) == (
        "ismv880d-retention",
        158,
        "archive",
        "snapshot",
    )
    assert (
        e.failing == "[ismv880d-repo:ismv880d-2026.11.29-2026.11.29-18:54:34.828] is missing "
        "(1 retries so far)"
    )
    [e] = (await ism.explain(FakeClient(Answers(recorded("67"))), "ismlc3abf")).values()
    assert e.failing.startswith("[no-such-repo-3abf] missing")
    [e] = (await ism.explain(FakeClient(Answers(recorded("35"))), "ismvd1b6")).values()
    assert (e.state, e.failing) == ("-> archive", None)
    three = await ism.explain(FakeClient(Answers(recorded("28"))), "ismv1ae3")
    assert {n: e.policy_id for n, e in three.items()} == {
        "ismv1ae3-2026.11.28": "ismv1ae3-retention",
        "ismv1ae3-2026.11.26": None,
        "ismv1ae3-2026.11.27": "ismv1ae3-other",
    }


async def test_audit_reads_the_policy_in_force_and_each_index_state():
    fake = RecordedIsm()
    client = FakeClient(fake)
    await setup(client)
    day = dt.date(2026, 11, 20)
    rows = [IndexRow(f"falco-{d:%Y.%m.%d}", d, 6, None, None) for d in (day, day + dt.timedelta(1))]
    fake.indices = {rows[0].index: Index(OURS), rows[1].index: Index()}
    fake.initialize()
    installed, policy, got = await _ism(client, SETTINGS, rows)
    assert installed and policy is not None
    assert (policy["id"], policy["states"], policy["differs_from_git"]) == (
        OURS,
        ["hot", "archive", "delete"],
        [],
    )
    assert [(r.policy, r.state) for r in got] == [(OURS, "hot"), (None, None)]
    fake.policies[OURS][0]["default_state"] = "archive"  # edited by hand
    _, policy, _ = await _ism(client, SETTINGS, rows)
    assert policy["differs_from_git"] == ["policy.default_state"]


async def test_audit_runs_on_a_prefix_without_an_index():
    fake = RecordedIsm()
    client = FakeClient(fake)
    await setup(client)
    installed, policy, rows = await _ism(client, SETTINGS, [])
    assert installed and policy is not None and rows == []


async def test_audit_names_a_failing_snapshot_and_an_outdated_version():
    fake = RecordedIsm()
    client = FakeClient(fake)
    await setup(client)
    today = dt.date(2027, 11, 25)
    old, older = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
    rows = [IndexRow(f"falco-{d:%Y.%m.%d}", d, (today - d).days, None, None) for d in (old, older)]
    failing = recorded("80")["ismv880d-2026.11.29"] | {"policy_id": OURS}
    fake.indices = {rows[0].index: Index(OURS, failing=failing), rows[1].index: Index(OURS)}
    fake.initialize()
    fake.indices[rows[1].index].seq_no -= 3  # a change_policy ISM refused
    _, policy, rows = await _ism(client, SETTINGS, rows)
    got = findings("falco", today, rows, [], True, policy, 365, 30)
    kinds = {(f.kind, f.subject): f.detail for f in got if f.kind != "day_missing"}
    assert set(kinds) == {
        ("snapshot_failing", rows[0].index),
        ("policy_outdated", rows[1].index),
    }
    assert "is missing" in kinds[("snapshot_failing", rows[0].index)]
