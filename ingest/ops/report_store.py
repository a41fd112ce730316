"""Where `audit retention --save` keeps each day's report: a folder, or an S3 bucket (the
archive's, e.g. ``s3://falco-archive/reports``), as ``<prefix>-retention-<day>.md``,
``.json`` and ``.csv``. A report saved again the same day replaces that day's files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ingest.config import OpsSettings
from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.ops.audit import Report


def save_report(report: Report, dest: str, settings: OpsSettings) -> list[str]:
    """Write the report in its three forms to ``dest``; where each went."""
    stem = f"{report.prefix}-retention-{report.today:%Y-%m-%d}"
    forms = {
        f"{stem}.md": report.to_markdown().encode(),
        f"{stem}.json": report.to_json(),
        f"{stem}.csv": report.to_csv().encode(),
    }
    if dest.startswith("s3://"):
        return _to_s3(dest, forms, settings)
    folder = Path(dest)
    if not folder.is_dir():
        raise ConfigError(f"audit retention --save {dest}: no such folder")
    out = []
    for name, data in forms.items():
        (folder / name).write_bytes(data)
        out.append(str(folder / name))
    return out


def _to_s3(dest: str, forms: dict[str, bytes], settings: OpsSettings) -> list[str]:
    import boto3  # only this command needs it

    bucket, _, key_prefix = dest[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"audit retention --save {dest}: no bucket (s3://BUCKET/PATH)")
    s3 = settings.s3
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key.get_secret_value(),
    )
    out = []
    for name, data in forms.items():
        key = f"{key_prefix.strip('/')}/{name}" if key_prefix.strip("/") else name
        client.put_object(Bucket=bucket, Key=key, Body=data)
        out.append(f"s3://{bucket}/{key}")
    return out
