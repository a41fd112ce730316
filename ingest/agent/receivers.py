"""The HTTP receiver (Falco http_output / Falcosidekick-style) and stdin (program_output)."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

import msgspec
from aiohttp import web

from ingest.agent.intake import Intake, LongLine


def split_body(body: bytes) -> list[bytes]:
    """One alert per POST (Falco's http_output, compact; Falcosidekick-style or a script's,
    maybe pretty-printed: one JSON value however many lines it spans), or NDJSON: one per
    non-empty line."""
    body = body.strip()
    if b"\n" in body:
        try:
            _check_json(body)
            return [body]
        except (msgspec.DecodeError, RecursionError):
            pass  # not one JSON value: lines
    return [ln.strip() for ln in body.split(b"\n") if ln.strip()]


_check_json = msgspec.json.Decoder(msgspec.Raw).decode


class Lines:
    """Bytes read piece by piece cut into alerts, one per non-empty line; a line longer
    than ``max_alert`` is never held whole, only its first bytes, size and sha256
    (``LongLine``), while its newline is looked for."""

    def __init__(self, max_alert: int) -> None:
        self.max_alert = max_alert
        self._buf = b""
        self._long: LongLine | None = None

    def feed(self, data: bytes) -> tuple[list[bytes], list[LongLine]]:
        """The lines and long lines that ``data`` completes."""
        lines: list[bytes] = []
        longs: list[LongLine] = []
        if self._long is not None:
            end = data.find(b"\n")
            self._long.add(data if end < 0 else data[:end])
            if end < 0:
                return lines, longs
            longs.append(self._long)
            self._long, data = None, data[end + 1 :]
        self._buf += data
        cut = self._buf.rfind(b"\n")
        if cut >= 0:
            for line in self._buf[:cut].split(b"\n"):
                self._line(line, lines, longs)
            self._buf = self._buf[cut + 1 :]
        if len(self._buf) > self.max_alert:
            self._long = LongLine()
            self._long.add(self._buf)
            self._buf = b""
        return lines, longs

    def end(self) -> tuple[list[bytes], list[LongLine]]:
        """What is left once the input has ended (its last line needs no newline)."""
        lines: list[bytes] = []
        longs: list[LongLine] = []
        if self._long is not None:
            longs.append(self._long)
        else:
            self._line(self._buf, lines, longs)
        self._buf, self._long = b"", None
        return lines, longs

    def _line(self, line: bytes, lines: list[bytes], longs: list[LongLine]) -> None:
        line = line.strip()
        if len(line) > self.max_alert:
            long = LongLine()
            long.add(line)
            longs.append(long)
        elif line:
            lines.append(line)


class Body:
    """A POST body read piece by piece: its alerts (``split_body`` while the body is short
    enough to be one alert; else its lines), and the long lines. At most ``max_body`` bytes
    of alerts are held."""

    def __init__(self, max_alert: int, max_body: int) -> None:
        self.max_alert, self.max_body = max_alert, max_body
        self.whole = b""  # the body while it is short enough to be one alert
        self.size = 0
        self.lines: list[bytes] = []
        self.longs: list[LongLine] = []
        self._held = 0
        self._split = Lines(max_alert)

    def feed(self, data: bytes) -> bool:
        """Take the next piece; False once more than ``max_body`` bytes would be held."""
        self.size += len(data)
        if self.size <= self.max_alert:
            self.whole += data
        self._add(*self._split.feed(data))
        return self._held <= self.max_body

    def end(self) -> list[bytes]:
        """The alerts to spool, once the body has ended."""
        self._add(*self._split.end())
        return split_body(self.whole) if self.size <= self.max_alert else self.lines

    def _add(self, lines: list[bytes], longs: list[LongLine]) -> None:
        self.lines += lines
        self.longs += longs
        self._held += sum(map(len, lines))


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
        body = Body(self.intake.max_alert_bytes, self.max_body)
        async for chunk in request.content.iter_chunked(256 * 1024):
            if not body.feed(chunk):
                return web.Response(
                    status=413, text=f"body holds more than {self.max_body} bytes of alerts\n"
                )
        lines = body.end()
        if not lines and not body.longs:
            return web.Response(status=400, text="empty body\n")
        spool = self.intake.spool
        if not self.intake.try_put(self.name, lines, durable=True, longs=body.longs):
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
        app = web.Application()
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
        split = Lines(self.intake.max_alert_bytes)
        while not stop.is_set():
            chunk = await reader.read(256 * 1024)
            lines, longs = split.feed(chunk) if chunk else split.end()
            if longs:
                await self.intake.reject_held_back(self.name, longs, stop)
            if lines and not await self.intake.put(self.name, lines, stop):
                return
            if not chunk:
                return  # EOF: Falco closed the pipe
