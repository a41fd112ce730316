"""The image is reproducible: requirements.lock pins every runtime dependency (and the build
backend) by version and sha256, the hashes are PyPI's own (pip downloads every pinned file
with --require-hashes), and the Dockerfile installs from it and nothing else, as non-root.
No Docker engine runs here, so the image itself is not built."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", line):
            current = m.group(1).lower()
            pins[current] = []
        elif current and (h := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current].append(h.group(1))
    return pins


def test_the_lock_pins_every_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {_name(r) for r in project["project"]["dependencies"]}
    wanted |= {_name(r) for r in project["build-system"]["requires"]}
    pins = _pins()
    assert wanted <= set(pins), wanted - set(pins)
    assert all(pins.values()), [n for n, h in pins.items() if not h]


def test_the_hashes_are_the_published_files(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps"]
        + ["-r", str(LOCK), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.iterdir())) == len(_pins())


def test_the_dockerfile_installs_from_the_lock_only_and_runs_as_non_root():
    steps = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip()]
    runs = " ".join(s for s in steps if not s.startswith("#"))
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in runs
    assert "pip install --no-cache-dir --no-deps --no-build-isolation ." in runs
    assert runs.count("pip install") == 2  # nothing installed beside the lock and the package
    assert steps.index("COPY requirements.lock ./") < steps.index("COPY ingest ./ingest")
    user = [s for s in steps if s.startswith("USER ")]
    assert user == ["USER 10001"]
