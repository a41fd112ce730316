from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "sample-alerts.jsonl"


@pytest.fixture(scope="session")
def sample_lines() -> list[bytes]:
    return [ln for ln in SAMPLES.read_bytes().splitlines() if ln.strip()]
