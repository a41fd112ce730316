"""Every setting of the agent, the consumer and the platform tools, as its environment
variable (less ``INGEST_``), its default and its JSON schema: what the Helm chart's
``values.yaml`` documents under ``settings`` and its ``values.schema.json`` checks, so a wrong
value fails at ``helm install``. Passwords are not among them: they come from the
``*_PASSWORD_FILE`` settings, never from a ConfigMap. The chart sets the metrics ports.

    python -m ingest.settings_catalog --write charts/falco-ingest   # after changing config.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ingest.config import AgentSettings, ConsumerSettings, OpsSettings

BEGIN = "  # --- every setting and its default (python -m ingest.settings_catalog --write) ---"
END = "  # --- end of the settings ---"
_LEFT_OUT = {"METRICS_PORT"}  # the chart's consumer.metricsPort and agent.metricsPort
_KEEP = ("type", "anyOf", "enum", "minimum", "maximum", "exclusiveMinimum", "pattern", "items")


def catalog() -> dict[str, dict[str, Any]]:
    """``{NAME: schema with its default}``, sorted, for every deployable's settings."""
    out: dict[str, dict[str, Any]] = {}
    for model in (ConsumerSettings, AgentSettings, OpsSettings):
        schema = model.model_json_schema()
        defs = schema.get("$defs", {})
        for name, prop in schema["properties"].items():
            ref = prop.get("$ref")
            if ref:
                for sub, leaf in defs[ref.rsplit("/", 1)[1]]["properties"].items():
                    out[f"{name}__{sub}".upper()] = leaf
            else:
                out[name.upper()] = prop
    return {
        name: _plain(prop)
        for name, prop in sorted(out.items())
        if name not in _LEFT_OUT and not _secret(prop)
    }


def _secret(prop: dict[str, Any]) -> bool:
    kinds = prop.get("anyOf", [prop])
    return any(k.get("format") == "password" for k in kinds)


def _plain(prop: dict[str, Any]) -> dict[str, Any]:
    """The schema Helm checks: types and bounds, no titles or formats it does not know."""
    kept = {k: v for k, v in prop.items() if k in _KEEP}
    if "anyOf" in kept:
        kept["anyOf"] = [_plain(k) for k in kept["anyOf"]]
    if "default" in prop:
        kept["default"] = prop["default"]
    return kept


def schema_settings() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "INGEST_<NAME> settings; a null leaves the product's default",
        "additionalProperties": False,
        "properties": {
            name: ({"anyOf": [prop, {"type": "null"}]} if "anyOf" not in prop else prop)
            | ({"default": prop["default"]} if "default" in prop else {})
            for name, prop in catalog().items()
        },
    }


def values_block() -> str:
    """The commented list of every setting with its default, for values.yaml."""
    lines = [BEGIN]
    for name, prop in catalog().items():
        default = prop.get("default")
        shown = "~ (unset)" if default is None else json.dumps(default)
        lines.append(f"  # {name}: {shown}")
    lines.append(END)
    return "\n".join(lines)


def rewritten(chart: Path) -> dict[Path, str]:
    """values.yaml and values.schema.json with their generated parts as the code says now."""
    values = chart / "values.yaml"
    text = values.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    schema_file = chart / "values.schema.json"
    schema = json.loads(schema_file.read_text())
    schema["properties"]["settings"] = schema_settings()
    return {
        values: text[:start] + values_block() + text[end:],
        schema_file: json.dumps(schema, indent=2) + "\n",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", type=Path, metavar="CHART", required=True)
    args = parser.parse_args()
    for path, text in rewritten(args.write).items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
