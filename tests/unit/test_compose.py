"""docker-compose.yml: no engine runs here, so check its structure and its settings."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ingest.cli import parser
from ingest.config import _unknown_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_dependencies():
    services = COMPOSE["services"]
    assert {"kafka", "opensearch", "dashboards", "minio", "minio-init", "agent", "consumer"} <= set(
        services
    )
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
    assert services["opensearch"]["image"].startswith("opensearchproject/opensearch:2.19")
    assert "falco-archive" in " ".join(services["minio-init"]["command"])


@pytest.mark.parametrize("service", ["agent", "consumer", "setup"])
def test_ingest_settings_in_compose_are_real_settings(service, monkeypatch):
    env = COMPOSE["services"][service]["environment"]
    for key in list(os.environ):
        if key.startswith("INGEST_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    assert _unknown_env() == []


def test_compose_config_validates():
    tool = shutil.which("docker-compose")
    assert tool, (
        "docker-compose (Debian package) validates the file without an engine; ./dev installs it"
    )
    res = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


def test_setup_imports_the_dashboard_that_dashboards_opens_on(monkeypatch):
    from ingest.config import OpsSettings, load
    from ingest.ops.dashboards import overview_url

    services = COMPOSE["services"]
    setup = services["setup"]
    assert setup["depends_on"]["dashboards"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["dashboards"]
    for key in list(os.environ):
        if key.startswith("INGEST_"):
            monkeypatch.delenv(key)
    for key, value in setup["environment"].items():
        monkeypatch.setenv(key, str(value))
    url = overview_url(load(OpsSettings))
    assert url is not None and url.startswith("http://dashboards:5601/")
    route = services["dashboards"]["environment"]["SERVER_DEFAULTROUTE"]
    assert url == "http://dashboards:5601" + route


K8S = ROOT / "deploy" / "k8s" / "falco-ingest.yaml"  # the Helm chart rendered (tests/deploy)


def _k8s_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def _pods() -> list[dict]:
    specs = [
        d["spec"].get("jobTemplate", {}).get("spec", d["spec"]) for d in _k8s_docs() if "spec" in d
    ]
    return [s["template"]["spec"] for s in specs if "template" in s]


def test_kubernetes_manifests_parse_and_use_real_settings(monkeypatch):
    kinds = {d["kind"] for d in _k8s_docs()}
    assert {"DaemonSet", "Deployment", "Job", "CronJob", "PodDisruptionBudget"} <= kinds
    for key in list(os.environ):
        if key.startswith("INGEST_"):
            monkeypatch.delenv(key)
    for pod in _pods():
        for c in pod["containers"]:
            for e in c.get("env", []):
                monkeypatch.setenv(e["name"], e.get("value", "x"))
    assert os.environ.get("INGEST_KAFKA__BOOTSTRAP_SERVERS")  # the settings did reach them
    assert _unknown_env() == []


def test_kubernetes_containers_run_real_commands():
    commands = []
    for pod in _pods():
        for c in pod["containers"]:
            args = parser().parse_args(c["args"])  # exits (SystemExit) on an unknown command
            commands.append(args.command)
    assert {"agent", "consume", "setup", "archive", "audit"} <= set(commands)


def test_falco_example_points_at_what_the_daemonset_reads():
    falco = yaml.safe_load((ROOT / "examples" / "falco-outputs.yaml").read_text())
    agent = next(d for d in _k8s_docs() if d["kind"] == "DaemonSet")
    args = agent["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"file:{falco['file_output']['filename']}" in args
    assert falco["http_output"]["url"].rstrip("/") in args
    assert falco["json_output"] is True and falco["program_output"]["keep_alive"] is True
    program = falco["program_output"]["program"].split()
    assert program[0] == "falco-ingest" and parser().parse_args(program[1:]).input == ["stdin"]


def test_kubernetes_workloads_run_as_non_root_and_read_secrets_from_files():
    pods = _pods()
    assert len(pods) == 5
    for pod in pods:
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {"falco-ingest-credentials"}
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] and ctx["runAsUser"] != 0, c["name"]
            assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
            assert "envFrom" not in c  # no Secret as environment: files only
            assert all("PASSWORD" not in e["name"] or e["name"].endswith("_FILE") for e in c["env"])
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/etc/falco-ingest/secrets" in mounts
