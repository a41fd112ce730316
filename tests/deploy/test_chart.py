"""The Helm chart (charts/falco-ingest), checked with real tools: helm (built from the Go
module proxy) lints and renders it with the default values and with a production-like
file; every rendered object is validated against the Kubernetes API schemas of the versions
we support (kubernetes-validate, strict); wrong values fail at install; the settings it
documents and checks are the product's own, and the rendered copy in deploy/k8s is current."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ingest.settings_catalog import catalog, rewritten
from ingest.stack.tools import checkov, crd_file, helm, rendered_copy

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "falco-ingest"
PRODUCTION = CHART / "ci" / "production-values.yaml"
KUBERNETES = ["1.29.0", "1.31.0", "1.34.0"]  # what the chart supports, oldest to newest
# not in the API schemas: KEDA's and the Prometheus Operator's
CRDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    return helm()


def render(helm_bin: Path, *args: str, kube: str = "1.31.0") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(helm_bin), "template", "falco-ingest", str(CHART), "-n", "falco"]
        + ["--kube-version", kube, *args],
        capture_output=True,
        text=True,
        check=False,
    )


def objects(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_lint_is_clean(helm_bin, values):
    done = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART), "--kube-version", "1.31.0", *values],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kube", KUBERNETES)
@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_every_object_is_valid_for_the_kubernetes_api(helm_bin, values, kube):
    done = render(helm_bin, *values, kube=kube)
    assert done.returncode == 0, done.stderr
    unknown = set()
    for obj in objects(done.stdout):
        try:
            kubernetes_validate.validate(obj, kube, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add(obj["kind"])
    assert unknown <= CRDS
    if values:
        assert unknown == CRDS  # the production file turns KEDA (SASL) and the ServiceMonitor on


def test_the_custom_resources_are_valid_for_their_published_crds(helm_bin):
    done = render(helm_bin, "-f", str(PRODUCTION))
    custom = [o for o in objects(done.stdout) if o["kind"] in CRDS]
    assert {o["kind"] for o in custom} == CRDS
    for obj in custom:
        schema = crd_schema(obj["kind"], obj["apiVersion"])
        jsonschema.validate(obj, schema)
        broken = dict(obj, spec=dict(obj["spec"], replicas=3))  # no such field
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_keda_reaches_a_secured_kafka_as_the_consumers_do(helm_bin):
    docs = objects(render(helm_bin, "-f", str(PRODUCTION)).stdout)
    scaled = next(o for o in docs if o["kind"] == "ScaledObject")
    auth = next(o for o in docs if o["kind"] == "TriggerAuthentication")
    consumer = next(o for o in docs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    mounted = {v["secret"]["secretName"] for v in consumer["volumes"] if "secret" in v}
    refs = {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        ("password", "falco-ingest-credentials", "kafka-password"),
        ("ca", "falco-ingest-tls", "ca.pem"),
    }
    assert {name for _, name, _ in refs} <= mounted
    env = {e["name"] for e in consumer["containers"][0]["env"]}
    assert {e["name"] for e in auth["spec"]["env"]} <= env
    plain = objects(render(helm_bin, "--set", "consumer.keda.enabled=true").stdout)
    assert "TriggerAuthentication" not in {o["kind"] for o in plain}


def test_a_broken_object_is_caught_by_the_validator():
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.31.0", strict=True)


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("settings.CONSUMER__BATCH_MAX_DOCS=-1", "minimum"),
        ("settings.KAFKA__TOPIK=x", "KAFKA__TOPIK"),
        ("settings.LOG_LEVEL=LOUD", "DEBUG"),
        ("consumer.replicas=many", "want integer"),
        ("agent.http.port=80", "minimum"),
        ("consumer.keda.enabled=true,consumer.keda.maxReplicas=8", "6 partitions"),
        ("consumer.keda.enabled=true,consumer.hpa.enabled=true", "choose one"),
        ("tls.caPem=nonsense", "does not match pattern"),
    ],
)
def test_a_wrong_value_fails_at_install(helm_bin, setting, said):
    done = render(helm_bin, "--set", setting)
    assert done.returncode != 0 and said in done.stderr, done.stderr


def test_the_settings_are_the_products_own_and_current():
    for path, text in rewritten(CHART).items():
        assert path.read_text() == text, f"{path}: run python -m ingest.settings_catalog --write"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["settings"]) <= set(catalog())


def test_every_setting_reaches_each_container_as_a_known_variable(helm_bin):
    done = render(helm_bin, "-f", str(PRODUCTION))
    production = yaml.safe_load(PRODUCTION.read_text())["settings"]
    chart_own = {"INGEST_AGENT__HOSTNAME", "INGEST_AGENT__STATE_DIR", "INGEST_METRICS_PORT"}
    known = {f"INGEST_{name}" for name in catalog()} | chart_own
    pods = 0
    for obj in objects(done.stdout):
        spec = _pod_spec(obj)
        if spec is None:
            continue
        pods += 1
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert set(env) <= known, set(env) - known
            for name, value in production.items():
                assert env[f"INGEST_{name}"] == str(value), (obj["kind"], name)
    assert pods == 5  # agent, consumer, setup, two CronJobs


def test_pods_run_as_non_root_read_only_with_limits(helm_bin):
    done = render(helm_bin, "-f", str(PRODUCTION))
    for obj in objects(done.stdout):
        spec = _pod_spec(obj)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
            assert "memory" in c["resources"]["limits"], c["name"]
            if c["name"] == "state-owner":  # chowns the hostPath, nothing else
                assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
            else:
                assert ctx["runAsNonRoot"] and ctx["capabilities"] == {"drop": ["ALL"]}


def test_certificates_given_as_pems_become_a_secret_every_pod_mounts(helm_bin):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    done = render(helm_bin, "--set-string", f"tls.caPem={pem}")
    assert done.returncode == 0, done.stderr
    docs = objects(done.stdout)
    secret = next(o for o in docs if o["metadata"]["name"] == "falco-ingest-tls")
    assert secret["stringData"] == {"ca.pem": pem}
    pods = [spec for o in docs if (spec := _pod_spec(o)) is not None]
    assert len(pods) == 5
    for spec in pods:
        assert {"name": "tls", "secret": {"secretName": "falco-ingest-tls"}} in spec["volumes"]
        for c in spec["containers"]:
            assert "/etc/falco-ingest/tls" in {m["mountPath"] for m in c["volumeMounts"]}


def test_setup_runs_before_install_and_upgrade(helm_bin):
    done = render(helm_bin)
    hooks = {
        o["kind"]: o["metadata"]["annotations"]["helm.sh/hook"]
        for o in objects(done.stdout)
        if "helm.sh/hook" in o["metadata"].get("annotations", {})
    }
    assert hooks == {"Job": "pre-install,pre-upgrade", "Secret": "pre-install,pre-upgrade"}


def _checkov(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(checkov()), "-d", str(folder), "--framework", "kubernetes", "--compact"]
        + ["--skip-download", "--config-file", str(CHART / ".checkov.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_policy_checker_finds_nothing_but_the_justified(helm_bin, tmp_path):
    for name, values in (("default", []), ("production", ["-f", str(PRODUCTION)])):
        done = render(helm_bin, *values)
        assert done.returncode == 0, done.stderr
        (tmp_path / f"{name}.yaml").write_text(done.stdout)
    scan = _checkov(tmp_path)
    assert scan.returncode == 0 and "Failed checks: 0" in scan.stdout, scan.stdout[-3000:]
    # each skip in .checkov.yaml says why, in the comment above it
    lines = (CHART / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, ln in enumerate(lines) if ln.strip().startswith("- CKV")]
    assert skips and all(lines[i - 1].strip().startswith("#") for i in skips)
    # and the scan is live: a privileged pod with a writable root is caught
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pod.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad", "namespace": "falco"},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x:1", "securityContext": {"privileged": True}}
                    ]
                },
            }
        )
    )
    caught = _checkov(bad)
    assert caught.returncode != 0 and "CKV_K8S_16" in caught.stdout  # privileged


def test_the_rendered_copy_in_deploy_is_current(helm_bin):
    copy = ROOT / "deploy" / "k8s" / "falco-ingest.yaml"
    assert copy.read_text() == rendered_copy(), "python -m ingest.stack.tools > " + str(copy)


def crd_schema(kind: str, api_version: str) -> dict:
    """The OpenAPI schema of ``kind`` at ``api_version`` from its published CRD, made
    strict: an object that lists its properties takes no others (as kubectl's
    --validate=strict treats them), unless the CRD says it keeps unknown fields."""
    crd = yaml.safe_load(crd_file(kind).read_text())
    version = api_version.rsplit("/", 1)[1]
    served = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    return _strict(served[version])


def _strict(schema):
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    keeps = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
    if "properties" in out and not keeps:
        out["additionalProperties"] = False
    return out


def _pod_spec(obj: dict) -> dict | None:
    kind = obj["kind"]
    if kind in ("Deployment", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def test_the_audit_job_runs_restore_tests_and_keeps_its_reports(helm_bin):
    from ingest.cli import parser

    def audit_args(*values: str) -> list[str]:
        done = render(helm_bin, *values)
        assert done.returncode == 0, done.stderr
        (job,) = [
            o for o in objects(done.stdout) if o["metadata"]["name"].endswith("audit-retention")
        ]
        (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        return container["args"]

    production = audit_args("-f", str(PRODUCTION))
    assert production[-4:] == ["--verify-archive", "3", "--save", "s3://falco-archive/reports"]
    parsed = parser().parse_args(production)  # the command takes them
    assert (parsed.verify_archive, parsed.save) == (3, "s3://falco-archive/reports")
    assert audit_args()[-2:] == ["--verify-archive", "2"]  # the default: no place to keep it
    bad = render(helm_bin, "--set", "auditRetention.saveTo=/tmp/reports")
    assert bad.returncode != 0 and "saveTo" in bad.stderr
