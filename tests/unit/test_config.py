import pytest

from ingest.config import AgentSettings, ConsumerSettings, OpsSettings, load
from ingest.errors import ConfigError


def test_env_nesting(monkeypatch):
    monkeypatch.setenv("INGEST_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("INGEST_CONSUMER__BATCH_MAX_DOCS", "123")
    s = load(ConsumerSettings)
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.consumer.batch_max_docs == 123
    assert s.kafka.topic == "falco.events"
    assert s.kafka.dlq_topic == "falco.events.dlq"


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("INGEST_CONSUMER__BATCH_MAX_DOCS", "0", "consumer.batch_max_docs"),
        ("INGEST_OPENSEARCH__URL", "opensearch:9200", "opensearch.url"),
        ("INGEST_OPENSEARCH__INDEX_PREFIX", "Falco", "opensearch.index_prefix"),
        ("INGEST_KAFKA__SECURITY_PROTOCOL", "SASL_SSL", "kafka"),
        ("INGEST_CONSUMER__DRAIN_TIMEOUT_S", "60", "consumer"),
        ("INGEST_KAFKA__COMPRESSION", "brotli", "kafka.compression"),
        ("INGEST_NOT_A_SETTING", "1", "not_a_setting"),
    ],
)
def test_bad_setting_fails_naming_it(monkeypatch, var, value, named):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load(ConsumerSettings)
    assert named in str(err.value)


def test_config_file_and_env_priority(tmp_path, monkeypatch):
    cfg = tmp_path / "ingest.toml"
    cfg.write_text('[kafka]\ntopic = "from-file"\ngroup_id = "g-file"\n')
    monkeypatch.setenv("INGEST_KAFKA__GROUP_ID", "g-env")
    monkeypatch.delenv("INGEST_CONFIG_FILE", raising=False)
    s = load(ConsumerSettings, cfg)
    assert s.kafka.topic == "from-file"
    assert s.kafka.group_id == "g-env"
    monkeypatch.delenv("INGEST_CONFIG_FILE")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load(ConsumerSettings, tmp_path / "nope.toml")


def test_agent_cross_field_checks(monkeypatch):
    monkeypatch.setenv("INGEST_AGENT__TLS_CERT", "/tmp/cert.pem")
    with pytest.raises(ConfigError, match="tls_key"):
        load(AgentSettings)


def test_secrets_are_not_printed(monkeypatch):
    monkeypatch.setenv("INGEST_OPENSEARCH__USERNAME", "u")
    monkeypatch.setenv("INGEST_OPENSEARCH__PASSWORD", "hunter2")
    s = load(OpsSettings)
    assert "hunter2" not in repr(s)


def test_archive_repository_fs_or_s3():
    from ingest.config import OpsSettings, S3Settings
    from ingest.ops.setup import _repository

    fs = _repository(OpsSettings(archive_type="fs", archive_location="/snapshots/a"))
    assert fs == {"type": "fs", "settings": {"location": "/snapshots/a", "compress": True}}
    s3 = _repository(OpsSettings(archive_type="s3", s3=S3Settings(bucket="vault")))
    assert s3["type"] == "s3"
    assert s3["settings"] == {"bucket": "vault", "base_path": "falco-archive", "compress": True}


def test_a_resources_dir_without_the_json_folders_fails_at_start(monkeypatch, tmp_path):
    monkeypatch.setenv("INGEST_RESOURCES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="resources_dir") as err:
        load(OpsSettings)
    assert "mappings, index_templates, ilm" in str(err.value)
    for folder in ("mappings", "index_templates", "ilm"):
        (tmp_path / folder).mkdir()
    assert load(OpsSettings).resources_dir == tmp_path


def test_passwords_come_from_files_as_mounted_secrets(monkeypatch, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-a-secret\n")
    monkeypatch.setenv("INGEST_OPENSEARCH__USERNAME", "falco-consumer")
    monkeypatch.setenv("INGEST_OPENSEARCH__PASSWORD_FILE", str(secret))
    monkeypatch.setenv("INGEST_KAFKA__SASL_PASSWORD_FILE", str(secret))
    s = load(ConsumerSettings)
    assert s.opensearch.password.get_secret_value() == "from-a-secret"  # line end dropped
    assert s.kafka.sasl_password.get_secret_value() == "from-a-secret"
    assert "from-a-secret" not in repr(s)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"INGEST_OPENSEARCH__PASSWORD": "x"}, "opensearch.password and opensearch.password_file"),
        ({}, "opensearch.password_file"),
    ],
)
def test_a_password_file_that_cannot_be_used_fails_naming_the_setting(
    monkeypatch, tmp_path, extra, named
):
    missing = tmp_path / "no-such-file"
    monkeypatch.setenv("INGEST_OPENSEARCH__PASSWORD_FILE", str(missing))
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load(ConsumerSettings)
    assert named in str(err.value) and "x\n" not in str(err.value)
