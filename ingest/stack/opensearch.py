"""An OpenSearch single node, assembled from Maven Central artifacts, in one of two releases.

3.3.2 (the default): the integ-test-zip distribution and the repository-s3 plugin assembled
from its jar and dependencies with a plugin descriptor and a security policy, so that the
archive is a real S3 repository in the stack's bucket (moto). It needs Java 21 or newer.

2.19.0 (``INGEST_STACK_OPENSEARCH_VERSION=2.19.0``, what platforms run today): the
integ-test-zip, the job-scheduler plugin zip and the lang-mustache module (needed by ISM's
snapshot action) assembled from its jars; Maven Central serves no repository-s3 for 2.x, so
its archive is an ``fs`` repository under ``path.repo``. It runs on Java 17.

The index-management (ISM) plugin zip is installed when Maven Central serves it; see README.
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
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import StackError
from ingest.stack import fetch, process
from ingest.stack.layout import Layout

RUN_AS = "falco-opensearch"
VERSION_SETTING = "INGEST_STACK_OPENSEARCH_VERSION"


@dataclass(frozen=True)
class Release:
    version: str
    java: int  # the oldest Java it runs on
    mustache: bool  # assemble the lang-mustache module (2.x: ISM's snapshot action)
    s3: bool  # assemble repository-s3 from its jar: the archive is an S3 repository
    plugins: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        plugin = f"{self.version}.0"
        object.__setattr__(
            self,
            "plugins",
            {
                name: f"org.opensearch.plugin:{name}:{plugin}:zip"
                for name in ("opensearch-job-scheduler", "opensearch-index-management")
            },
        )

    @property
    def dist(self) -> str:
        return f"org.opensearch.distribution.integ-test-zip:opensearch:{self.version}:zip"


RELEASES = {
    "3.3.2": Release("3.3.2", java=21, mustache=False, s3=True),
    "2.19.0": Release("2.19.0", java=17, mustache=True, s3=False),
}
DEFAULT_VERSION = "3.3.2"


def release() -> Release:
    """The release ``INGEST_STACK_OPENSEARCH_VERSION`` names (default 3.3.2)."""
    version = os.environ.get(VERSION_SETTING, DEFAULT_VERSION)
    if version not in RELEASES:
        raise StackError(
            "opensearch",
            f"{VERSION_SETTING}={version}: the local stack runs " + " or ".join(sorted(RELEASES)),
        )
    return RELEASES[version]


def _descriptor(name: str, classname: str, description: str, version: str, java: int) -> str:
    """The plugin-descriptor.properties of a module or plugin assembled from jars."""
    return f"""description={description}
version={version}
name={name}
classname={classname}
java.version={java}
opensearch.version={version}
extended.plugins=
has.native.controller=false
"""


_MUSTACHE_POLICY = """grant {
  permission java.lang.reflect.ReflectPermission "suppressAccessChecks";
  permission java.lang.RuntimePermission "accessDeclaredMembers";
};
"""


# The plugin opens connections to the S3 endpoint; OpenSearch 3's agent refuses a plugin
# any socket its policy does not grant.
_S3_POLICY = """grant {
  permission java.net.SocketPermission "*", "connect,resolve";
};
"""
# moto takes any credentials; the node reads them from its keystore.
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"  # noqa: S105 - moto's, for the local stack only


class OpenSearch:
    """Node ``node`` of the stack's cluster (one node unless ``Layout.opensearch_nodes``).
    The nodes share the installation; each has its own configuration folder (its keystore),
    data, logs and ports."""

    def __init__(self, layout: Layout, node: int = 1) -> None:
        self.layout = layout
        self.node = node
        self.release = release()
        self.home = layout.opensearch_home
        self.dist = self.home / f"opensearch-{self.release.version}"
        self.port = layout.opensearch_port + node - 1
        first = node == 1  # keeps the names of a one-node stack
        self.name = "opensearch" if first else f"opensearch-{node}"
        self.pid_file = self.home / ("opensearch.pid" if first else f"opensearch-{node}.pid")
        self.stdout = self.home / ("stdout.log" if first else f"stdout-{node}.log")
        self.config = self.dist / "config" if first else self.home / f"config-{node}"
        self.logs = self.dist / "logs" if first else self.home / f"logs-{node}"
        self.snapshots = self.home / "snapshots"
        self.plugins_missing: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.logs / "falco-ingest-dev.log"

    def env(self) -> dict[str, str]:
        if self.node != 1:
            return {}  # clients talk to the first node
        env = {
            "INGEST_OPENSEARCH__URL": self.url,
            "INGEST_STACK_SNAPSHOT_DIR": str(self.snapshots),
            VERSION_SETTING: self.release.version,
        }
        if self.release.s3:
            env["INGEST_ARCHIVE_TYPE"] = "s3"
        if self.layout.opensearch_nodes > 1:  # a replica of every shard on another node
            env["INGEST_INDEX_REPLICAS"] = "1"
            env["INGEST_STACK_OPENSEARCH_NODES"] = str(self.layout.opensearch_nodes)
        return env

    def _assemble(self) -> None:
        marker = self.dist / ".assembled"
        if marker.exists():
            self.plugins_missing = json.loads(marker.read_text())["missing"]
            return
        cache = self.layout.cache / "opensearch"
        log = self.layout.cache / "fetch.log"
        rel = self.release
        dist_zip = fetch.artifact(self.name, rel.dist, cache, log)
        shutil.rmtree(self.dist, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        _unzip(dist_zip, self.home)
        missing = []
        for plugin, coord in rel.plugins.items():
            try:
                plugin_zip = fetch.artifact(self.name, coord, cache, log)
            except StackError:
                missing.append(plugin)
                continue
            _unzip(plugin_zip, self.dist / "plugins" / plugin)
        if rel.mustache:
            self._add(
                "modules/lang-mustache",
                f"org.opensearch.plugin:lang-mustache-client:{rel.version}",
                _descriptor(
                    "lang-mustache",
                    "org.opensearch.script.mustache.MustachePlugin",
                    "Mustache scripting integration for OpenSearch",
                    rel.version,
                    11,
                ),
                _MUSTACHE_POLICY,
            )
        if rel.s3:
            self._add(
                "plugins/repository-s3",
                f"org.opensearch.plugin:repository-s3:{rel.version}",
                _descriptor(
                    "repository-s3",
                    "org.opensearch.repositories.s3.S3RepositoryPlugin",
                    "Snapshot repositories in S3",
                    rel.version,
                    21,
                ),
                _S3_POLICY,
            )
        for script in (self.dist / "bin").iterdir():
            script.chmod(0o755)
        self.plugins_missing = missing
        marker.write_text(json.dumps({"missing": missing}))

    def _add(self, where: str, coord: str, descriptor: str, policy: str) -> None:
        """A module or plugin assembled from its jar and dependencies, leaving out the jars
        the node's own lib/ has (two copies of a class stop the node: "jar hell")."""
        name = where.rsplit("/", 1)[1]
        jars = fetch.jars_with_dependencies(
            self.name,
            [coord],
            self.layout.cache / "opensearch" / f"{name}-{self.release.version}",
            self.layout.cache / "fetch.log",
        )
        core = {_artifact(jar.name) for jar in (self.dist / "lib").glob("*.jar")}
        folder = self.dist / where
        folder.mkdir(parents=True, exist_ok=True)
        for jar in jars.glob("*.jar"):
            if _artifact(jar.name) not in core:
                shutil.copy2(jar, folder / jar.name)
        (folder / "plugin-descriptor.properties").write_text(descriptor)
        (folder / "plugin-security.policy").write_text(policy)

    def _configure(self) -> None:
        # a 2.x node cannot read 3.x data; each node has its own
        data = self.home / f"data-{self.release.version}{'' if self.node == 1 else self.node}"
        data.mkdir(parents=True, exist_ok=True)
        self.snapshots.mkdir(parents=True, exist_ok=True)
        if self.node != 1:
            shutil.copytree(self.dist / "config", self.config, dirs_exist_ok=True)
        nodes = self.layout.opensearch_nodes
        base = self.layout.opensearch_port
        if nodes == 1:
            discovery = ["discovery.type: single-node"]
        else:
            peers = ", ".join(f"127.0.0.1:{base + 100 + n}" for n in range(nodes))
            names = ", ".join(f"node-{n}" for n in range(1, nodes + 1))
            discovery = [
                f"discovery.seed_hosts: [{peers}]",
                f"cluster.initial_cluster_manager_nodes: [{names}]",
            ]
        lines = [
            "cluster.name: falco-ingest-dev",
            f"node.name: node-{self.node}",
            "network.host: 127.0.0.1",
            f"http.port: {self.port}",
            f"transport.port: {self.port + 100}",
            *discovery,
            f"path.data: {data}",
            f"path.logs: {self.logs}",
            f"path.repo: [{json.dumps(str(self.snapshots))}]",
            "action.auto_create_index: true",
            "cluster.routing.allocation.disk.threshold_enabled: false",
        ]
        if self.layout.indexing_limit:
            lines.append(f"indexing_pressure.memory.limit: {self.layout.indexing_limit}")
        if self.release.s3:
            lines += [
                f"s3.client.default.endpoint: 127.0.0.1:{self.layout.s3_port}",
                "s3.client.default.protocol: http",
                "s3.client.default.path_style_access: true",
                "s3.client.default.region: us-east-1",
            ]
        if "opensearch-index-management" not in self.plugins_missing:
            lines += [
                "plugins.index_state_management.job_interval: 1",
                "plugins.index_state_management.jitter: 0",
            ]
        (self.config / "opensearch.yml").write_text("\n".join(lines) + "\n")

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
            running = self._running_version()
            if running not in (None, self.release.version):
                raise StackError(
                    self.name,
                    f"OpenSearch {running} runs here, {VERSION_SETTING} asks for "
                    f"{self.release.version}: `falco-ingest stack down` first",
                )
            self._assemble()
            return
        if process.port_open("127.0.0.1", self.port):
            raise StackError(self.name, f"port {self.port} is taken by another process")
        self._assemble()
        self._configure()
        java_home = os.environ.get("OPENSEARCH_JAVA_HOME") or _java_home(self.release)
        if self.release.s3:
            self._keystore(java_home)
        user = self._user()
        heap = os.environ.get("INGEST_STACK_OPENSEARCH_HEAP", "1g")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "OPENSEARCH_JAVA_HOME": java_home,
            "OPENSEARCH_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
            "OPENSEARCH_PATH_CONF": str(self.config),
        }
        process.spawn(
            [str(self.dist / "bin" / "opensearch")],
            log=self.stdout,
            pid_file=self.pid_file,
            env=env,
            cwd=self.home,
            user=user,
        )

    def _keystore(self, java_home: str) -> None:
        """The S3 client's credentials, which a node reads only from its keystore."""
        tool = str(self.dist / "bin" / "opensearch-keystore")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OPENSEARCH_JAVA_HOME": java_home,
            "OPENSEARCH_PATH_CONF": str(self.config),
        }
        keystore = self.config / "opensearch.keystore"
        runs: list[tuple[list[str], str | None]] = []
        if not keystore.exists():
            runs.append(([tool, "create"], None))
        runs += [
            ([tool, "add", "--stdin", "--force", "s3.client.default.access_key"], S3_ACCESS_KEY),
            ([tool, "add", "--stdin", "--force", "s3.client.default.secret_key"], S3_SECRET_KEY),
        ]
        for argv, secret in runs:
            done = subprocess.run(argv, input=secret, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(self.name, f"{' '.join(argv[1:3])}: {done.stderr.strip()[-300:]}")

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

    def _running_version(self) -> str | None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:  # noqa: S310
                return str(json.loads(resp.read())["version"]["number"])
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return None

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
            f"pid {pid}, {self.url}, OpenSearch {self.release.version}, cluster {status}, "
            f"plugins: {', '.join(sorted(plugins)) or 'none'}"
        )

    def stop(self) -> bool:
        return process.stop(self.pid_file, timeout=60)


def _unzip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)


def _artifact(jar: str) -> str:
    """``jackson-core`` of ``jackson-core-2.18.2.jar``."""
    parts = jar.removesuffix(".jar").split("-")
    while parts and not parts[-1][:1].isalpha():
        parts.pop()
    return "-".join(parts)


def _java_home(rel: Release) -> str:
    """A Java home of at least the release's Java: the one on PATH, else the newest JDK
    under /usr/lib/jvm (Debian's and Temurin's place)."""
    found: list[tuple[int, Path]] = []
    java = shutil.which("java")
    if java is not None:
        home = Path(java).resolve().parent.parent
        found.append((_java_version(home), home))
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        found += [(_java_version(h), h) for h in sorted(jvm.iterdir()) if (h / "bin/java").exists()]
    good = [(v, h) for v, h in found if v >= rel.java]
    if not good:
        raise StackError(
            "opensearch",
            f"OpenSearch {rel.version} needs Java {rel.java} or newer and none was found: set "
            f"OPENSEARCH_JAVA_HOME, or {VERSION_SETTING}=2.19.0 (runs on Java 17)",
        )
    on_path = [h for v, h in good if java is not None and h == Path(java).resolve().parent.parent]
    return str(on_path[0] if on_path else max(good)[1])


def _java_version(home: Path) -> int:
    """The feature version of the JDK at ``home`` (its ``release`` file), 0 if unknown."""
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0])
    except (OSError, ValueError):
        pass
    return 0
