"""The search request OpenSearch Dashboards 2.19 sends for one of our saved objects, for
the part of its language our objects use: KQL queries of `field:value`, `field <= n`,
`field:*` joined by `and`; count, terms and date_histogram aggregations; saved searches
and visualizations built on one. Anything else raises, so a new object that this module
cannot translate fails its test instead of passing untested.

How Dashboards builds it (its data plugin): the saved search's query and the
visualization's own query, each KQL clause a `bool.should` of one query with
`minimum_should_match: 1`, `and` a `bool.filter`; the time picker's range on the index
pattern's time field; aggregations nested in the order of the visualization's buckets,
the count metric being the buckets' doc_count; `interval: auto` the "nice" interval
nearest to a 50th of the time range."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

_CLAUSE = re.compile(r"^\s*([@\w.]+)\s*(:|<=|>=|<|>)\s*(\S+)\s*$")
_RANGE = {"<=": "lte", ">=": "gte", "<": "lt", ">": "gt"}

# Dashboards' "nice" intervals for `interval: auto` (its calcAutoIntervalNear, bar target
# 50), from the bound of 3 weeks down: the interval is that of the bound just above the
# first bound at or below a 50th of the range. Longer ranges use calendar intervals,
# which this module does not translate.
_NICE = [
    (timedelta(weeks=3), timedelta(weeks=1)),
    (timedelta(weeks=1), timedelta(days=1)),
    (timedelta(hours=24), timedelta(hours=12)),
    (timedelta(hours=6), timedelta(hours=3)),
    (timedelta(hours=2), timedelta(hours=1)),
    (timedelta(minutes=45), timedelta(minutes=30)),
    (timedelta(minutes=20), timedelta(minutes=10)),
    (timedelta(minutes=9), timedelta(minutes=5)),
    (timedelta(minutes=3), timedelta(minutes=1)),
    (timedelta(seconds=45), timedelta(seconds=30)),
    (timedelta(seconds=15), timedelta(seconds=10)),
    (timedelta(seconds=7.5), timedelta(seconds=5)),
    (timedelta(seconds=5), timedelta(seconds=1)),
]


def kql(query: str) -> list[dict[str, Any]]:
    """The filter clauses of a KQL query made of `and`-joined simple clauses."""
    if not query.strip():
        return []
    out = []
    for part in re.split(r"\s+and\s+", query.strip()):
        m = _CLAUSE.match(part)
        if m is None:
            raise NotImplementedError(f"KQL not translated here: {part!r}")
        field, op, value = m.groups()
        if op == ":" and value == "*":
            clause: dict[str, Any] = {"exists": {"field": field}}
        elif op == ":":
            clause = {"match": {field: value}}
        else:
            clause = {"range": {field: {_RANGE[op]: float(value) if "." in value else int(value)}}}
        out.append({"bool": {"should": [clause], "minimum_should_match": 1}})
    return out


def auto_interval(span: timedelta) -> str:
    """The fixed interval Dashboards picks for `interval: auto` over ``span``."""
    target = span / 50
    if target >= _NICE[0][0]:
        raise NotImplementedError(f"a range of {span}: calendar intervals")
    below = next((i for i, (bound, _) in enumerate(_NICE) if bound <= target), None)
    if below is None:
        raise NotImplementedError(f"a range of {span}: intervals under a second")
    seconds = int(_NICE[below - 1][1].total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _search_source(obj: dict[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = json.loads(
        obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
    )
    if source.get("filter"):
        raise NotImplementedError(f"{obj['id']}: filters are not translated here")
    return source


def _query(objects: list[dict[str, Any]], time_field: str, start: datetime, end: datetime) -> dict:
    clauses: list[dict[str, Any]] = []
    for obj in objects:
        query = _search_source(obj)["query"]
        if query["language"] != "kuery":
            raise NotImplementedError(f"{obj['id']}: {query['language']} queries")
        clauses += kql(query["query"])
    clauses.append(
        {
            "range": {
                time_field: {
                    "gte": start.isoformat().replace("+00:00", "Z"),
                    "lte": end.isoformat().replace("+00:00", "Z"),
                    "format": "strict_date_optional_time",
                }
            }
        }
    )
    return {"bool": {"must": [], "filter": clauses, "should": [], "must_not": []}}


def _bucket_dsl(agg: dict[str, Any], span: timedelta) -> dict[str, Any]:
    params = agg["params"]
    if agg["type"] == "terms":
        if params.get("otherBucket") or params.get("missingBucket"):
            raise NotImplementedError(f"terms {params['field']}: other/missing buckets")
        key = "_count" if params["orderBy"] == "1" else params["orderBy"]
        return {
            "terms": {
                "field": params["field"],
                "order": {key: params["order"]},
                "size": params["size"],
            }
        }
    if agg["type"] == "date_histogram":
        interval = params["interval"]
        return {
            "date_histogram": {
                "field": params["field"],
                "fixed_interval": auto_interval(span) if interval == "auto" else interval,
                "time_zone": "UTC",
                "min_doc_count": params["min_doc_count"],
            }
        }
    raise NotImplementedError(f"aggregation {agg['type']}")


def visualization_request(
    vis: dict[str, Any], by_id: dict[str, dict[str, Any]], start: datetime, end: datetime
) -> tuple[str, dict[str, Any]]:
    """(index pattern title, search body) of a visualization built on a saved search."""
    refs = {r["name"]: r["id"] for r in vis["references"]}
    search = by_id[refs[vis["attributes"]["savedSearchRefName"]]]
    pattern = by_id[
        {r["name"]: r["id"] for r in search["references"]}[_search_source(search)["indexRefName"]]
    ]
    state = json.loads(vis["attributes"]["visState"])
    aggs = [a for a in state["aggs"] if a["enabled"]]
    for agg in aggs:
        if agg["schema"] == "metric" and agg["type"] != "count":
            raise NotImplementedError(f"metric {agg['type']}")
    buckets = [a for a in aggs if a["schema"] != "metric"]
    span = end - start
    nested: dict[str, Any] = {}
    for agg in reversed(buckets):
        dsl = _bucket_dsl(agg, span)
        if nested:
            dsl["aggs"] = nested
        nested = {agg["id"]: dsl}
    time_field = pattern["attributes"]["timeFieldName"]
    body = {
        "size": 0,
        "aggs": nested,
        "query": _query([search, vis], time_field, start, end),
    }
    return pattern["attributes"]["title"], body


def search_request(
    search: dict[str, Any],
    by_id: dict[str, dict[str, Any]],
    start: datetime,
    end: datetime,
    size: int = 500,
) -> tuple[str, dict[str, Any]]:
    """(index pattern title, search body) of a saved search as Discover or a dashboard's
    search panel asks for its documents (the sample size of 500 rows)."""
    refs = {r["name"]: r["id"] for r in search["references"]}
    pattern = by_id[refs[_search_source(search)["indexRefName"]]]
    time_field = pattern["attributes"]["timeFieldName"]
    sort = [{field: {"order": order}} for field, order in search["attributes"]["sort"]]
    body = {
        "size": size,
        "sort": sort,
        "query": _query([search], time_field, start, end),
    }
    return pattern["attributes"]["title"], body


def rows(aggs: dict[str, Any], path: tuple = ()) -> dict[tuple, int]:
    """The doc_count of every leaf bucket, keyed by the bucket keys from the top."""
    out: dict[tuple, int] = {}
    for agg in aggs.values():
        if not isinstance(agg, dict) or "buckets" not in agg:
            continue
        for bucket in agg["buckets"]:
            key = path + (bucket["key"],)
            inner = {k: v for k, v in bucket.items() if isinstance(v, dict) and "buckets" in v}
            if inner:
                out.update(rows(inner, key))
            else:
                out[key] = bucket["doc_count"]
    return out
