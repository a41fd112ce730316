"""The platform team's JSON (mappings/, index_templates/, ilm/) rendered for one environment."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MODULE = Path(__file__).resolve()


def resource_root(module: Path = _MODULE) -> Path:
    """Where mappings/, index_templates/, ilm/ and examples/ are: the checkout this code
    runs from, else where an install from a wheel put them (``<prefix>/share/falco-ingest``,
    the prefix being the one this module is installed under)."""
    checkout = module.parents[2]
    candidates = [checkout]
    if len(module.parents) > 5:  # <prefix>/lib/pythonX.Y/site-packages/ingest/ops/x.py
        candidates.append(module.parents[5] / "share" / "falco-ingest")
    candidates.append(Path(sys.prefix) / "share" / "falco-ingest")
    for root in candidates:
        if (root / "mappings").is_dir():
            return root
    return checkout


ROOT = resource_root()


@dataclass(frozen=True)
class Resource:
    kind: str  # component_template | index_template | ism_policy
    name: str
    path: str  # REST path
    body: dict[str, Any]

    @property
    def version(self) -> object:
        return self.body.get("version", self.body.get("policy", {}).get("schema_version"))


def render(text: str, values: dict[str, str]) -> dict[str, Any]:
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load_resources(
    prefix: str,
    *,
    shards: int = 1,
    replicas: int = 0,
    refresh_interval: str = "5s",
    root: Path = ROOT,
) -> list[Resource]:
    values = {
        "prefix": prefix,
        "shards": str(shards),
        "replicas": str(replicas),
        "refresh_interval": refresh_interval,
    }
    out: list[Resource] = []
    for file in sorted((root / "mappings").glob("*.json")):
        name = file.stem.replace("falco", prefix, 1)
        out.append(
            Resource(
                "component_template",
                name,
                f"/_component_template/{name}",
                render(file.read_text(), values),
            )
        )
    for file in sorted((root / "index_templates").glob("*.json")):
        name = file.stem.replace("falco", prefix, 1)
        out.append(
            Resource(
                "index_template",
                name,
                f"/_index_template/{name}",
                render(file.read_text(), values),
            )
        )
    return out


def canonical(value: Any) -> Any:
    """Compare as OpenSearch returns things: scalars as strings, key order ignored."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
