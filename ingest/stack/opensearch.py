"""OpenSearch 2.19 single node, assembled from Maven Central artifacts.

The integ-test-zip distribution carries only the transport module. We add the
job-scheduler plugin zip and assemble the lang-mustache module (needed by ISM's
snapshot action) from its official jars with a plugin descriptor. The
index-management (ISM) plugin zip is installed when Maven Central serves it; see
README "Why no ISM plugin locally".
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from ingest.errors import StackError
from ingest.stack import fetch, process
from ingest.stack.layout import Layout

OPENSEARCH_VERSION = "2.19.0"
PLUGIN_VERSION = f"{OPENSEARCH_VERSION}.0"
RUN_AS = "falco-opensearch"
_DIST = f"org.opensearch.distribution.integ-test-zip:opensearch:{OPENSEARCH_VERSION}:zip"
_PLUGINS = {
    "opensearch-job-scheduler": (
        f"org.opensearch.plugin:opensearch-job-scheduler:{PLUGIN_VERSION}:zip"
    ),
    "opensearch-index-management": (
        f"org.opensearch.plugin:opensearch-index-management:{PLUGIN_VERSION}:zip"
    ),
}
_MUSTACHE = [f"org.opensearch.plugin:lang-mustache-client:{OPENSEARCH_VERSION}"]
_MUSTACHE_DESCRIPTOR = f"""description=Mustache scripting integration for OpenSearch
version={OPENSEARCH_VERSION}
name=lang-mustache
classname=org.opensearch.script.mustache.MustachePlugin
java.version=11
opensearch.version={OPENSEARCH_VERSION}
extended.plugins=
has.native.controller=false
"""
_MUSTACHE_POLICY = """grant {
  permission java.lang.reflect.ReflectPermission "suppressAccessChecks";
  permission java.lang.RuntimePermission "accessDeclaredMembers";
};
"""


class OpenSearch:
    name = "opensearch"

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.home = layout.opensearch_home
        self.dist = self.home / f"opensearch-{OPENSEARCH_VERSION}"
        self.port = layout.opensearch_port
        self.pid_file = self.home / "opensearch.pid"
        self.stdout = self.home / "stdout.log"
        self.snapshots = self.home / "snapshots"
        self.plugins_missing: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.dist / "logs" / "falco-ingest-dev.log"

    def env(self) -> dict[str, str]:
        return {
            "INGEST_OPENSEARCH__URL": self.url,
            "INGEST_STACK_SNAPSHOT_DIR": str(self.snapshots),
        }

    def _assemble(self) -> None:
        marker = self.dist / ".assembled"
        if marker.exists():
            self.plugins_missing = json.loads(marker.read_text())["missing"]
            return
        cache = self.layout.cache / "opensearch"
        log = self.layout.cache / "fetch.log"
        dist_zip = fetch.artifact(self.name, _DIST, cache, log)
        shutil.rmtree(self.dist, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        _unzip(dist_zip, self.home)
        missing = []
        for plugin, coord in _PLUGINS.items():
            try:
                plugin_zip = fetch.artifact(self.name, coord, cache, log)
            except StackError:
                missing.append(plugin)
                continue
            _unzip(plugin_zip, self.dist / "plugins" / plugin)
        mustache = fetch.jars_with_dependencies(
            self.name, _MUSTACHE, cache / f"lang-mustache-{OPENSEARCH_VERSION}", log
        )
        module = self.dist / "modules" / "lang-mustache"
        module.mkdir(parents=True, exist_ok=True)
        for jar in mustache.glob("*.jar"):
            shutil.copy2(jar, module / jar.name)
        (module / "plugin-descriptor.properties").write_text(_MUSTACHE_DESCRIPTOR)
        (module / "plugin-security.policy").write_text(_MUSTACHE_POLICY)
        for script in (self.dist / "bin").iterdir():
            script.chmod(0o755)
        self.plugins_missing = missing
        marker.write_text(json.dumps({"missing": missing}))

    def _configure(self) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.snapshots.mkdir(parents=True, exist_ok=True)
        lines = [
            "cluster.name: falco-ingest-dev",
            "node.name: node-1",
            "network.host: 127.0.0.1",
            f"http.port: {self.port}",
            f"transport.port: {self.port + 100}",
            "discovery.type: single-node",
            f"path.data: {data}",
            f"path.logs: {self.dist / 'logs'}",
            f"path.repo: [{json.dumps(str(self.snapshots))}]",
            "action.auto_create_index: true",
            "cluster.routing.allocation.disk.threshold_enabled: false",
        ]
        if "opensearch-index-management" not in self.plugins_missing:
            lines += [
                "plugins.index_state_management.job_interval: 1",
                "plugins.index_state_management.jitter: 0",
            ]
        (self.dist / "config" / "opensearch.yml").write_text("\n".join(lines) + "\n")

    def _user(self) -> str | None:
        """OpenSearch refuses to run as root: as root, run it as a system user of its own."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS],
                check=True,
            )
        # The user walks from / to its folder, so every parent must be traversable.
        for parent in self.home.parents:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o001)
        subprocess.run(["chown", "-R", f"{RUN_AS}:", str(self.home)], check=True)
        return RUN_AS

    def start(self) -> None:
        if process.read_pid(self.pid_file):
            self._assemble()
            return
        if process.port_open("127.0.0.1", self.port):
            raise StackError(self.name, f"port {self.port} is taken by another process")
        self._assemble()
        self._configure()
        user = self._user()
        java_home = os.environ.get("OPENSEARCH_JAVA_HOME") or _java_home()
        heap = os.environ.get("INGEST_STACK_OPENSEARCH_HEAP", "1g")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "OPENSEARCH_JAVA_HOME": java_home,
            "OPENSEARCH_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
        }
        process.spawn(
            [str(self.dist / "bin" / "opensearch")],
            log=self.stdout,
            pid_file=self.pid_file,
            env=env,
            cwd=self.home,
            user=user,
        )

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.read_pid(self.pid_file) is None:
                raise StackError(
                    self.name,
                    "process exited during start: " + process.tail(self.stdout, 3),
                    str(self.log),
                )
            ok, _ = self.health()
            if ok:
                return
            time.sleep(0.5)
        raise StackError(self.name, f"not ready after {timeout:.0f}s", str(self.log))

    def health(self) -> tuple[bool, str]:
        pid = process.read_pid(self.pid_file)
        if pid is None:
            return False, "not running"
        try:
            with urllib.request.urlopen(f"{self.url}/_cluster/health", timeout=2) as resp:  # noqa: S310
                status = json.loads(resp.read())["status"]
            with urllib.request.urlopen(f"{self.url}/_cat/plugins?h=component", timeout=2) as resp:  # noqa: S310
                plugins = resp.read().decode().split()
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False, f"pid {pid}, not answering on {self.url}"
        ok = status in ("green", "yellow")
        return ok, (
            f"pid {pid}, {self.url}, OpenSearch {OPENSEARCH_VERSION}, cluster {status}, "
            f"plugins: {', '.join(sorted(plugins)) or 'none'}"
        )

    def stop(self) -> bool:
        return process.stop(self.pid_file, timeout=60)


def _unzip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)


def _java_home() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("opensearch", "no java on PATH (Java 17 or newer is needed)")
    return str(Path(java).resolve().parent.parent)
