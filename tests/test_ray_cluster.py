"""Sweeps on an existing Ray cluster started as Ray 2.60 starts one: `ray start --head` with a token
in ~/.ray/auth_token enables token authentication, and a driver given an explicit address must be
told to set RAY_AUTH_MODE=token (Ray's own error only says it failed to connect, after ~20 s).

Starts its own head node (a private HOME and temp dir, 127.0.0.1, a free port, one CPU, no
dashboard) and stops only the processes of that instance, found by its temp dir: `ray stop` would
stop every Ray instance of this user, other test runs' included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

from inspector.sweep.runner import RESULTS_FILE

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_of(marker: str) -> list[int]:
    """Processes whose command line names `marker` (this instance's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _stop_instance(marker: str) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in _processes_of(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while _processes_of(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not _processes_of(marker), "the Ray instance's processes did not end"


@pytest.fixture
def token_cluster():
    """(address, env for a driver: HOME holding the cluster's token, RAY_AUTH_MODE unset)."""
    if not RAY.is_file():
        pytest.skip("the ray command is not installed")
    root = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))  # short: Ray's socket paths must stay short
    home, temp = root / "home", root / "t"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home)}
    port = _free_port()
    try:
        started = subprocess.run(
            [str(RAY), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
             "--include-dashboard", "false", "--temp-dir", str(temp), "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "Token authentication is enabled" in started.stdout + started.stderr  # Ray 2.60's default with a token
        yield f"127.0.0.1:{port}", env
    finally:
        _stop_instance(str(temp))
        shutil.rmtree(root, ignore_errors=True)


def _cli_sweep(address: str, env: dict, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inspector", "sweep", "--model", "shakespeare", "--out", str(out), "--max-tokens", "16",
         "--no-search", "--no-per-layer", "--ray-address", address],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=150,
    )


# Three points of a sample model's sweep through the runner, as the CLI runs them (the whole CLI sweep
# evaluates 25 points, which on one CPU takes longer than this test should).
RUNNER_SCRIPT = """
import sys
from inspector.lm.catalog import sample_models, validation_text
from inspector.lm.checkpoint import load_checkpoint
from inspector.quant.config import QuantConfig
from inspector.sweep.evaluate import SweepSpec, held_out_ids
from inspector.sweep.runner import SweepRunner
from inspector.sweep.study import sensitivity_points

loaded = load_checkpoint(sample_models()["shakespeare"])
ids, chars = held_out_ids(loaded, validation_text(loaded), 16)
spec = SweepSpec(loaded, ids, chars, QuantConfig())
points = sensitivity_points(spec.base, loaded.config.num_hidden_layers, per_layer=False)[:3]
with SweepRunner(spec, sys.argv[2], address=sys.argv[1]) as runner:
    rows = runner.run(points)
print(len(rows), "points")
"""


def test_sweep_on_a_cluster_with_token_authentication(token_cluster, tmp_path):
    address, env = token_cluster
    refused = _cli_sweep(address, env, tmp_path / "refused")
    assert refused.returncode != 0
    assert "requires token authentication" in refused.stderr and "RAY_AUTH_MODE=token" in refused.stderr
    assert "~/.ray/auth_token" in refused.stderr and "Traceback" not in refused.stderr

    done = subprocess.run(
        [sys.executable, "-c", RUNNER_SCRIPT, address, str(tmp_path / "sweep")], env=env | {"RAY_AUTH_MODE": "token"},
        cwd=REPO, capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 points" in done.stdout
    points = pl.read_parquet(tmp_path / "sweep" / RESULTS_FILE)
    assert points.height == 3 and (points["status"] == "ok").all()
    base = points.filter(pl.col("kind") == "base").row(0, named=True)
    assert 0 < base["bits_per_char"] < 10 and base["cores"] > 0
