"""Shared by the browser tests: the Chromium they drive and a `streamlit run app.py` server on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from inspector.lm.catalog import sample_models
from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def browser_marks() -> list:
    """`pytestmark` of a browser test module: marked `browser`, skipped (with the reason) without Chromium or a sample model."""
    return [
        pytest.mark.browser,
        pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
        pytest.mark.skipif(not sample_models(), reason="no sample model in sample_models/"),
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server(log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` on a free port; yields its URL and process. Its output goes to `log_path`:
    a pipe nobody reads would block every server thread that logs once the pipe's 64 KiB are full."""
    port = _free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start within 60 s")
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def server_stacks(proc: subprocess.Popen, log_path: Path) -> str:
    """Every server thread's stack (the app installs a SIGUSR1 dump, see inspector.serve.stack_dumps), read back from its log."""
    if proc.poll() is None and hasattr(signal, "SIGUSR1"):
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
    return log_path.read_text(errors="replace")[-20_000:]
