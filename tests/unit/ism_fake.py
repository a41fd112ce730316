"""A stand-in for ISM's REST API that answers as the real node did (tests/fixtures/ism/).

It models what the recordings show and no more: policies with sequence numbers and
conditional updates, indices that are unmanaged, on a policy (at a version) or between two
states, explain, and add / change_policy with named indices or a pattern, their refusals
word for word. A change_policy is applied at once (the real node applies it at its next job
run); nothing here runs the lifecycle itself.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import orjson
from opensearchpy import NotFoundError, TransportError

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "ism"


def recorded(number: str) -> dict:
    """The recorded answer whose file name starts with ``number``."""
    [path] = RECORDED.glob(f"{number}-*.json")
    return orjson.loads(path.read_bytes())


def _reason(number: str) -> str:
    return recorded(number)["failed_indices"][0]["reason"]


HAS_POLICY = _reason("16")  # add on an index that has a policy
NOT_MANAGED = next(
    f["reason"] for f in recorded("31")["failed_indices"] if "not being managed" in f["reason"]
)
IN_TRANSITION = _reason("37")
NO_DOCUMENTS = recorded("60")  # explain / change_policy with a pattern matching no index
VERSION_CONFLICT = recorded("84")


@dataclass
class Index:
    policy: str | None = None
    seq_no: int | None = None  # None: attached, not initialized yet
    state: str | None = None
    transitioning_to: str | None = None
    failing: dict | None = None  # the recorded explain entry of a failing step


class RecordedIsm:
    """``client.transport`` of an OpenSearch with ISM, answering in the recorded shapes."""

    def __init__(self, installed: bool = True) -> None:
        self.installed = installed
        self.policies: dict[str, tuple[dict, int]] = {}  # id -> (policy body, seq_no)
        self.indices: dict[str, Index] = {}
        self.calls: list[tuple[str, str]] = []
        self._seq = 20  # the node's sequence numbers are shared by every policy document

    # -- the cluster, set up by tests -----------------------------------------------
    def initialize(self) -> None:
        """ISM's job run: attached indices start on the policy's current version."""
        for index in self.indices.values():
            if index.policy in self.policies and index.seq_no is None:
                index.seq_no = self.policies[index.policy][1]
                index.state = "hot"

    # -- the REST API ---------------------------------------------------------------
    async def perform_request(self, method, path, params=None, body=None, headers=None):
        self.calls.append((method, path))
        if not self.installed:
            raise TransportError(400, "no handler found for uri", {"error": "no handler found"})
        path, _, query = path.partition("?")
        parts = path.strip("/").split("/")
        if parts[:2] != ["_plugins", "_ism"]:
            raise AssertionError(f"unexpected {method} {path}")
        verb = parts[2]
        if verb == "policies" and len(parts) == 3:
            return {"policies": [], "total_policies": len(self.policies)}
        if verb == "policies":
            return self._policy(method, parts[3], query, body)
        if verb == "explain":
            return self._explain(parts[3])
        if verb in ("add", "change_policy"):
            return self._attach(verb, parts[3], body["policy_id"])
        raise AssertionError(f"unexpected {method} {path}")

    def _policy(self, method: str, pid: str, query: str, body: dict | None) -> dict:
        held = self.policies.get(pid)
        if method == "GET":
            if held is None:
                raise NotFoundError(404, "status_exception", "Policy not found")
            answer = recorded("01")  # ISM's own fields around the policy
            policy = copy.deepcopy(held[0]) | {
                k: answer["policy"][k]
                for k in ("last_updated_time", "schema_version", "error_notification")
            }
            policy["policy_id"] = pid
            return answer | {"_id": pid, "_seq_no": held[1], "policy": policy}
        if held is not None and query != f"if_seq_no={held[1]}&if_primary_term=3":
            raise TransportError(409, "version_conflict_engine_exception", VERSION_CONFLICT)
        self._seq += 1
        self.policies[pid] = (copy.deepcopy(body["policy"]), self._seq)
        answer = recorded("03" if held is None else "13")
        return answer | {"_id": pid, "_seq_no": self._seq}

    def _matching(self, target: str) -> list[str]:
        names = target.split(",")
        return sorted(n for n in self.indices if any(fnmatch.fnmatch(n, p) for p in names))

    def _explain(self, target: str) -> dict:
        names = self._matching(target)
        if not names:
            raise TransportError(400, "action_request_validation_exception", NO_DOCUMENTS)
        out: dict = {}
        for name in names:
            index = self.indices[name]
            if index.policy is None:
                out[name] = recorded("09")["ismv1ae3-2026.11.28"]
                continue
            if index.failing is not None:
                entry = copy.deepcopy(index.failing)
            elif index.transitioning_to is not None:
                entry = copy.deepcopy(recorded("35")["ismvd1b6-2026.11.25"])
                entry["transition_to"] = index.transitioning_to
            elif index.seq_no is None:
                entry = copy.deepcopy(recorded("07")["ismv3485-2026.11.20"])
            else:
                entry = copy.deepcopy(recorded("12")["ismv3485-2026.11.20"])
                entry["state"]["name"] = index.state or "hot"
            entry |= {"index": name, "policy_id": index.policy}
            entry["index.plugins.index_state_management.policy_id"] = index.policy
            if index.seq_no is not None:
                entry["policy_seq_no"] = index.seq_no
            out[name] = entry
        out["total_managed_indices"] = sum(1 for n in names if self.indices[n].policy)
        return out

    def _attach(self, verb: str, target: str, pid: str) -> dict:
        names = self._matching(target)
        if not names and verb == "change_policy":
            raise TransportError(400, "action_request_validation_exception", NO_DOCUMENTS)
        failed, updated = [], 0
        for name in names:
            index = self.indices[name]
            if verb == "add":
                why = HAS_POLICY if index.policy is not None else None
            elif index.policy is None:
                why = NOT_MANAGED
            elif index.transitioning_to is not None:
                why = IN_TRANSITION
            else:
                why = None  # change_policy moves an index on any policy, as the node did
            if why is not None:
                failed.append({"index_name": name, "index_uuid": "u-" + name, "reason": why})
                continue
            updated += 1
            index.policy = pid
            index.seq_no = self.policies[pid][1] if verb == "change_policy" else None
        return {"updated_indices": updated, "failures": bool(failed), "failed_indices": failed}


class FakeClient:
    def __init__(self, transport):
        self.transport = transport
