"""The "Falco Overview" saved objects (``dashboards/*.ndjson``, as OpenSearch Dashboards
exports them) rendered for one index prefix; what ``setup --plan`` shows of them and how
``setup`` imports them through Dashboards' saved objects API."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from ingest.config import OpsSettings
from ingest.errors import AccessRefused, DashboardsFailed
from ingest.ops.resources import ROOT, render

DEFAULT_PREFIX = "falco"
OVERVIEW = "overview"  # the dashboard's id is <prefix>-overview


def load_objects(prefix: str, root: Path = ROOT) -> list[dict[str, Any]]:
    """The saved objects of ``root/dashboards``, ids and titles made for ``prefix``: ids start
    with it (two prefixes' objects live side by side) and titles name it when it is not the
    default. The export's summary line (``exportedCount``) is not an object."""
    values = {
        "prefix": prefix,
        "title_suffix": "" if prefix == DEFAULT_PREFIX else f" ({prefix})",
    }
    out = []
    for file in sorted((root / "dashboards").glob("*.ndjson")):
        for line in file.read_text().splitlines():
            if not line.strip():
                continue
            obj = render(line, values)
            if "exportedCount" not in obj:
                out.append(obj)
    return out


def overview_url(settings: OpsSettings) -> str | None:
    """Where the dashboard opens, when Dashboards is configured."""
    url = settings.dashboards.url
    if url is None:
        return None
    prefix = settings.opensearch.index_prefix
    return f"{url.rstrip('/')}/app/dashboards#/view/{prefix}-{OVERVIEW}"


def drift(desired: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    """None when Dashboards holds the object as the file has it; else what differs. Only
    the attributes the file sets are compared (Dashboards adds its own), JSON held in
    strings is compared as JSON. An index pattern's ``fields`` is Dashboards' cache of the
    mapping, which it refreshes itself (a node may list more, such as OpenSearch 2.19's
    ``output_fields.``): it differs only when a field of ours is missing or typed otherwise.
    A field's ``count`` (how often people picked it in Discover) is not ours to reset."""
    if current is None:
        return "missing"
    have = current.get("attributes", {})
    changed = []
    for key, want in desired["attributes"].items():
        mine, theirs = _comparable(want), _comparable(have.get(key))
        if key == "fields" and isinstance(theirs, list):
            theirs = [f for f in theirs if f in mine]
        if mine != theirs:
            changed.append(key)
    if _references(desired) != _references(current):
        changed.append("references")
    if not changed:
        return None
    return "differs in " + ", ".join(changed[:5]) + ("" if len(changed) <= 5 else ", ...")


def _comparable(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "count"}
    if isinstance(value, list):
        items = [_comparable(v) for v in value]
        if all(isinstance(i, dict) and "name" in i for i in items) and items:
            items.sort(key=lambda i: str(i["name"]))
        return items
    return value


def _references(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((r["name"], r["type"], r["id"]) for r in obj.get("references", []))


def import_errors(answer: dict[str, Any]) -> list[str]:
    """One line per object Dashboards refused, from the import API's answer."""
    lines = []
    for err in answer.get("errors", []):
        error = err.get("error", {})
        detail = error.get("type", "error")
        if error.get("references"):
            missing = ", ".join(f"{r['type']} {r['id']}" for r in error["references"])
            detail += f" ({missing})"
        elif error.get("message"):
            detail += f": {error['message']}"
        lines.append(f"refused saved_object {err.get('type')} {err.get('id')}: {detail}")
    if not answer.get("success", False) and not lines:
        lines.append(f"refused saved_objects: Dashboards answered {json.dumps(answer)[:300]}")
    return lines


class Dashboards:
    """A session with Dashboards' saved objects API, as the OpenSearch settings' user."""

    def __init__(self, settings: OpsSettings) -> None:
        url = settings.dashboards.url
        if url is None:
            raise ValueError("dashboards.url is not set")
        self.base = url.rstrip("/") + "/api/saved_objects"
        self.settings = settings
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Dashboards:
        os_settings = self.settings.opensearch
        # Dashboards refuses API writes without this header (its XSRF protection); the
        # security plugin reads the tenant from `securitytenant`.
        headers = {"osd-xsrf": "true"}
        if os_settings.username and os_settings.password:
            pair = f"{os_settings.username}:{os_settings.password.get_secret_value()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if self.settings.dashboards.tenant:
            headers["securitytenant"] = self.settings.dashboards.tenant
        tls: ssl.SSLContext | bool = True
        if not os_settings.verify_certs:
            tls = False
        elif os_settings.ca_certs:
            tls = ssl.create_default_context(cafile=str(os_settings.ca_certs))
        self.session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=tls),
            timeout=aiohttp.ClientTimeout(total=self.settings.dashboards.request_timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def current(self, objects: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """Each object as Dashboards holds it now (None where it has none)."""
        wanted = [{"type": o["type"], "id": o["id"]} for o in objects]
        answer = await self._request("POST", "/_bulk_get", "reading the saved objects", json=wanted)
        held = []
        for got in answer.get("saved_objects", []):
            error = got.get("error")
            if error is not None and error.get("statusCode") != 404:
                raise DashboardsFailed(
                    f"Dashboards could not read saved object {got.get('type')} {got.get('id')}: "
                    f"{error.get('message', error)}"
                )
            held.append(None if error is not None else got)
        if len(held) != len(objects):
            raise DashboardsFailed(
                f"Dashboards answered {len(held)} saved objects for the {len(objects)} asked"
            )
        return held

    async def import_objects(self, objects: list[dict[str, Any]]) -> dict[str, Any]:
        """Import ``objects`` as one NDJSON file, replacing objects of the same ids."""
        ndjson = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)
        form = aiohttp.FormData()
        form.add_field(
            "file",
            ndjson.encode(),
            filename="falco-overview.ndjson",
            content_type="application/ndjson",
        )
        return await self._request(
            "POST", "/_import?overwrite=true", "importing the saved objects", data=form
        )

    async def _request(self, method: str, path: str, what: str, **kw: Any) -> dict[str, Any]:
        assert self.session is not None
        try:
            async with self.session.request(method, self.base + path, **kw) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DashboardsFailed(
                f"Dashboards did not answer at {self.settings.dashboards.url} "
                f"(INGEST_DASHBOARDS__URL) while {what}: {exc or type(exc).__name__}"
            ) from exc
        if status in (401, 403):
            kind = "credentials" if status == 401 else "privileges"
            raise AccessRefused(
                f"Dashboards refused our {kind} (HTTP {status}) while {what}: it is reached as "
                "INGEST_OPENSEARCH__USERNAME / INGEST_OPENSEARCH__PASSWORD(_FILE); check that "
                "user's role (and INGEST_DASHBOARDS__TENANT)"
            )
        if status != 200:
            raise DashboardsFailed(f"Dashboards answered HTTP {status} while {what}: {text[:300]}")
        try:
            body: dict[str, Any] | list[Any] = json.loads(text)
        except ValueError as exc:
            raise DashboardsFailed(
                f"Dashboards answered no JSON while {what} (is INGEST_DASHBOARDS__URL "
                f"Dashboards' address?): {text[:200]}"
            ) from exc
        if not isinstance(body, dict):
            raise DashboardsFailed(f"Dashboards answered {text[:200]} while {what}")
        return body
