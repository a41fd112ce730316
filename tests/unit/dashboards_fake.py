"""A local HTTP server answering as OpenSearch Dashboards' saved objects API, in the shapes
of recorded/dashboards_saved_objects_api.json (the answers Dashboards 2.19 gives): the
import with overwrite, bulk_get, and the XSRF and authentication refusals. It keeps the
objects it was given and every request it got."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from aiohttp import web

RECORDED = json.loads(
    (Path(__file__).parent / "recorded" / "dashboards_saved_objects_api.json").read_text()
)


ICONS = {
    result["type"]: result["meta"]["icon"]
    for answer in RECORDED["import"]["answers"].values()
    for result in answer["body"].get("successResults", []) + answer["body"].get("errors", [])
}


def _answer(recorded: dict[str, Any]) -> web.Response:
    return web.json_response(recorded["body"], status=recorded["status"])


class FakeDashboards:
    def __init__(self, password: str | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.password = password
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeDashboards:
        app = web.Application()
        app.router.add_post("/api/saved_objects/_bulk_get", self._bulk_get)
        app.router.add_post("/api/saved_objects/_import", self._import)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.password is not None and request.headers.get("Authorization") is None:
            return _answer(RECORDED["refusals"]["unauthenticated"])
        if request.headers.get("osd-xsrf") is None:
            return _answer(RECORDED["refusals"]["no_xsrf_header"])
        return None

    async def _bulk_get(self, request: web.Request) -> web.Response:
        wanted = await request.json()
        self.requests.append(
            {"path": request.path, "headers": dict(request.headers), "body": wanted}
        )
        refused = self._refused(request)
        if refused is not None:
            return refused
        found, missing = RECORDED["bulk_get"]["answers"]["found_and_missing"]["body"][
            "saved_objects"
        ]
        out = []
        for item in wanted:
            held = self.objects.get((item["type"], item["id"]))
            if held is None:
                shape = copy.deepcopy(missing)
                shape.update(id=item["id"], type=item["type"])
                shape["error"]["message"] = f"Saved object [{item['type']}/{item['id']}] not found"
            else:
                shape = {
                    k: v for k, v in copy.deepcopy(found).items() if k in ("updated_at", "version")
                }
                shape.update(copy.deepcopy(held))
            out.append(shape)
        return web.json_response({"saved_objects": out})

    async def _import(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        seen: dict[str, Any] = {"path": request.path, "query": dict(request.query)}
        seen["headers"] = dict(request.headers)
        self.requests.append(seen)
        refused = self._refused(request)
        if refused is not None:
            return refused
        assert part is not None and part.name == "file"  # type: ignore[union-attr]
        seen["filename"] = part.filename  # type: ignore[union-attr]
        seen["content_type"] = part.headers.get("Content-Type")  # type: ignore[union-attr]
        text = (await part.read()).decode()  # type: ignore[union-attr]
        if not str(part.filename).endswith(".ndjson"):  # type: ignore[union-attr]
            return _answer(RECORDED["import"]["answers"]["wrong_extension"])
        objects = [json.loads(line) for line in text.splitlines() if line.strip()]
        objects = [o for o in objects if "exportedCount" not in o]
        seen["objects"] = objects
        # Only imports with overwrite are modelled (setup sends no other; without it
        # Dashboards answers conflicts, which are not recorded here).
        assert request.query.get("overwrite") == "true", request.query
        given = {(o["type"], o["id"]) for o in objects} | set(self.objects)
        errors, results = [], []
        for obj in objects:
            key = (obj["type"], obj["id"])
            title = obj["attributes"].get("title")
            meta = {"title": title}
            if obj["type"] in ICONS:  # the icons the recorded answers show
                meta["icon"] = ICONS[obj["type"]]
            missing = [
                {"type": r["type"], "id": r["id"]}
                for r in obj.get("references", [])
                if (r["type"], r["id"]) not in given
            ]
            if missing:
                errors.append(
                    {
                        "id": obj["id"],
                        "type": obj["type"],
                        "title": title,
                        "meta": meta,
                        "error": {"type": "missing_references", "references": missing},
                    }
                )
            else:
                result = {"type": obj["type"], "id": obj["id"], "meta": meta}
                if key in self.objects:
                    result["overwrite"] = True
                results.append(result)
        if not errors:
            for obj in objects:
                self.objects[(obj["type"], obj["id"])] = obj
        body: dict[str, Any] = {"success": not errors, "successCount": len(results)}
        if results:
            body["successResults"] = results
        if errors:
            body["errors"] = errors
        return web.json_response(body)
