"""Installed from a wheel (as the Docker image is), the package finds its JSON and samples."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_install_from_the_wheel_finds_the_reviewed_json(tmp_path):
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = glob.glob(str(tmp_path / "falco_ingest-*.whl"))[0]
    prefix = tmp_path / "prefix"
    subprocess.run([*pip, "install", "--no-deps", "--prefix", str(prefix), wheel], check=True)
    site = next(prefix.glob("lib/python*/site-packages"))
    probe = (
        "from ingest.ops.resources import ROOT, load_resources;"
        "from ingest.ops.ism import policy_resource;"
        "from ingest.config import OpsSettings;"
        "import ingest;"
        "print(ingest.__file__);print(ROOT);"
        "print(len(load_resources('falco')), policy_resource(OpsSettings()).name);"
        "print((ROOT / 'examples' / 'sample-alerts.jsonl').is_file())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,  # not the checkout
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[0].startswith(str(site))  # the installed copy, not the checkout
    assert out[1] == str(prefix / "share" / "falco-ingest")
    assert out[2] == "3 falco-retention"
    assert out[3] == "True"
