"""Fetch artifacts from Maven Central with Maven itself, into a cache that later runs reuse.

Maven is the ordinary client for that registry: it resolves transitive dependencies,
checks checksums, and keeps its own local repository, so a second fetch is offline.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ingest.errors import StackError

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>falco-ingest.stack</groupId><artifactId>{name}</artifactId><version>1</version>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def _mvn(args: list[str], component: str, log: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(component, "Maven (mvn) is not on PATH; install it to fetch artifacts")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        rc = subprocess.call([mvn, "-B", "-q", *args], stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise StackError(component, f"mvn {args[0]} failed with exit code {rc}", str(log))


def jars_with_dependencies(component: str, coords: list[str], dest: Path, log: Path) -> Path:
    """Copy ``group:artifact:version`` jars and their runtime dependencies into ``dest``."""
    done = dest / ".complete"
    if done.exists():
        return dest
    deps = "\n".join(
        "    <dependency><groupId>{}</groupId><artifactId>{}</artifactId>"
        "<version>{}</version></dependency>".format(*c.split(":"))
        for c in coords
    )
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_POM.format(name=component, deps=deps))
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _mvn(
            [
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            component,
            log,
        )
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    done.touch()
    return dest


def artifact(component: str, coord: str, dest_dir: Path, log: Path) -> Path:
    """Fetch one artifact (``group:artifact:version:type``) into ``dest_dir``; return its path."""
    group, name, version, kind = coord.split(":")
    target = dest_dir / f"{name}-{version}.{kind}"
    if target.exists():
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    _mvn(
        ["dependency:copy", f"-Dartifact={coord}", f"-DoutputDirectory={dest_dir}"],
        component,
        log,
    )
    if not target.exists():
        raise StackError(component, f"{coord} was fetched but {target} is missing", str(log))
    return target
