"""The chart's tools, made once into the stack's download cache: Helm, built from the Go
module proxy (no registry here serves its release binaries), and checkov, the policy
checker, in a virtualenv of its own (its pins are not ours)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ingest.errors import StackError
from ingest.stack.layout import Layout

HELM_VERSION = "v3.22.0"
MODULE = "helm.sh/helm/v3/cmd/helm"
CHECKOV_VERSION = "3.3.30"


def helm(layout: Layout | None = None) -> Path:
    """The helm binary of ``HELM_VERSION``, built with ``go install`` if not there yet."""
    layout = layout or Layout.default()
    folder = layout.cache / f"helm-{HELM_VERSION}"
    binary = folder / "helm"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise StackError("helm", f"needs Go to build {MODULE}@{HELM_VERSION} (no go on PATH)")
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(folder), CGO_ENABLED="0")
    done = subprocess.run(
        [go, "install", f"{MODULE}@{HELM_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not binary.exists():
        raise StackError("helm", f"go install {MODULE}@{HELM_VERSION} failed: {done.stderr[-800:]}")
    return binary


def checkov(layout: Layout | None = None) -> Path:
    """checkov of ``CHECKOV_VERSION`` from PyPI, in a virtualenv of its own."""
    layout = layout or Layout.default()
    venv = layout.cache / f"checkov-{CHECKOV_VERSION}"
    binary = venv / "bin" / "checkov"
    if binary.exists():
        return binary
    for step in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", f"checkov=={CHECKOV_VERSION}"],
    ):
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise StackError("checkov", f"{' '.join(step)} failed: {done.stderr[-800:]}")
    return binary


# The custom resources the chart can make, and where their CRDs are published: in the Go
# modules of KEDA and of the Prometheus Operator, which the Go module proxy serves.
CRDS = {
    "ScaledObject": (
        "github.com/kedacore/keda/v2@v2.21.0",
        "config/crd/bases/keda.sh_scaledobjects.yaml",
    ),
    "TriggerAuthentication": (
        "github.com/kedacore/keda/v2@v2.21.0",
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ),
    "ServiceMonitor": (
        "github.com/prometheus-operator/prometheus-operator@v0.85.0",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    ),
}


def crd_file(kind: str) -> Path:
    """The published CRD of ``kind`` (YAML), from its module on the Go module proxy."""
    import json

    module, path = CRDS[kind]
    go = shutil.which("go")
    if go is None:
        raise StackError("crd", f"needs Go to download {module} (no go on PATH)")
    done = subprocess.run(
        [go, "mod", "download", "-json", module], capture_output=True, text=True, check=False
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise StackError("crd", f"go mod download {module} failed: {done.stdout[-500:]}")
    return Path(info["Dir"]) / path


CHART = Path(__file__).resolve().parents[2] / "charts" / "falco-ingest"
COPY_HEADER = (
    "# Generated from charts/falco-ingest with its default values (release falco-ingest,\n"
    "# namespace falco); do not edit. Install with the chart; regenerate with:\n"
    "#   python -m ingest.stack.tools > deploy/k8s/falco-ingest.yaml\n"
)


def rendered_copy() -> str:
    """The chart rendered with its defaults, as deploy/k8s/falco-ingest.yaml keeps it."""
    done = subprocess.run(
        [str(helm()), "template", "falco-ingest", str(CHART), "-n", "falco"]
        + ["--kube-version", "1.31.0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return COPY_HEADER + done.stdout


if __name__ == "__main__":
    print(rendered_copy(), end="")
