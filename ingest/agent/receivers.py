"""The HTTP receiver (Falco http_output / Falcosidekick-style) and stdin (program_output)."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

from aiohttp import web

from ingest.agent.intake import Intake


def split_body(body: bytes) -> list[bytes]:
    """One alert per POST, or NDJSON: one per non-empty line."""
    return [ln.strip() for ln in body.split(b"\n") if ln.strip()]


class HttpReceiver:
    def __init__(
        self,
        host: str,
        port: int,
        intake: Intake,
        max_body_bytes: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        client_ca: Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.name = f"http://{host}:{port}"
        self.intake = intake
        self.max_body = max_body_bytes
        self.ssl: ssl.SSLContext | None = None
        if tls_cert and tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls_cert, tls_key)
            if client_ca:
                ctx.load_verify_locations(client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
            self.ssl = ctx
        self._runner: web.AppRunner | None = None

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        lines = split_body(body)
        if not lines:
            return web.Response(status=400, text="empty body\n")
        spool = self.intake.spool
        if not self.intake.try_put(self.name, lines, durable=True):
            why = (
                "spool failed"
                if spool.failed is not None
                else "reject file not writable"
                if self.intake.reject_failing
                else "spool full"
            )
            return web.Response(status=503, text=f"{why}, retry later\n")
        try:
            await spool.sync()  # 2xx only once the alert is durable
        except OSError:
            return web.Response(status=503, text="spool failed, retry later\n")
        return web.Response(status=200, text="ok\n")

    async def _ping(self, _: web.Request) -> web.Response:
        return web.Response(text="pong\n")

    async def start(self) -> None:
        app = web.Application(client_max_size=self.max_body)
        app.add_routes(
            [web.get("/ping", self._ping), web.get("/healthz", self._ping)]
            + [web.post("/{tail:.*}", self._post)]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl)
        await site.start()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            if self._runner is not None:
                await self._runner.cleanup()


class StdinReader:
    name = "stdin"

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        buf = b""
        while not stop.is_set():
            chunk = await reader.read(256 * 1024)
            if not chunk:
                lines = [buf.strip()] if buf.strip() else []
                if lines:
                    await self.intake.put(self.name, lines, stop)
                return  # EOF: Falco closed the pipe
            buf += chunk
            cut = buf.rfind(b"\n")
            if cut < 0:
                continue
            lines = [ln.strip() for ln in buf[:cut].split(b"\n") if ln.strip()]
            buf = buf[cut + 1 :]
            if lines and not await self.intake.put(self.name, lines, stop):
                return
