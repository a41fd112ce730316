"""Detached service processes: pid files, logs, stop."""

import os
import time
from pathlib import Path

from ingest.stack import process


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_spawned_service_is_detached_logs_and_stops(tmp_path):
    log, pid_file = tmp_path / "svc.log", tmp_path / "svc.pid"
    pid = process.spawn(
        ["/bin/sh", "-c", "echo started; exec sleep 30"], log=log, pid_file=pid_file
    )
    assert process.read_pid(pid_file) == pid
    assert process.alive(pid)
    assert parent_of(pid) != os.getpid()  # not our child: no zombie, no warning
    deadline = time.monotonic() + 5
    while b"started" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_bytes() == b"started\n"
    assert process.stop(pid_file, timeout=5)
    assert not process.alive(pid)
    assert not pid_file.exists()
    assert not process.stop(pid_file)
