"""Installed from a wheel (as the Docker image is), the package finds its JSON and samples."""

from __future__ import annotations

import glob
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install(wheel: str, prefix: Path) -> Path:
    """Lay the wheel out under ``prefix`` as an installer does (the code in site-packages,
    the .data/data files under the prefix). Not with pip: pip would first uninstall the
    editable copy this very test runs from."""
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = site / "site-packages"
    with zipfile.ZipFile(wheel) as whl:
        for name in whl.namelist():
            _, data, rest = name.partition(".data/data/")
            target = prefix / rest if data else site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(whl.read(name))
    return site


def test_an_install_from_the_wheel_finds_the_reviewed_json(tmp_path):
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = glob.glob(str(tmp_path / "falco_ingest-*.whl"))[0]
    prefix = tmp_path / "prefix"
    site = install(wheel, prefix)
    probe = (
        "from ingest.ops.resources import ROOT, load_resources;"
        "from ingest.ops.ism import policy_resource;"
        "from ingest.config import OpsSettings;"
        "import ingest;"
        "print(ingest.__file__);print(ROOT);"
        "print(len(load_resources('falco')), policy_resource(OpsSettings()).name);"
        "print((ROOT / 'examples' / 'sample-alerts.jsonl').is_file());"
        "from ingest.ops.dashboards import load_objects;"
        "print(sorted({o['type'] for o in load_objects('falco')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,  # not the checkout
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].startswith(str(site))  # the installed copy, not the checkout
    assert lines[1] == str(prefix / "share" / "falco-ingest")
    assert lines[2] == "3 falco-retention"
    assert lines[3] == "True"
    assert lines[4] == "['dashboard', 'index-pattern', 'search', 'visualization']"
