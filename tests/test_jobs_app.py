"""The job queue from the Hardware page, driven with AppTest: two sessions asking for the same
published-size measurement share one job; it stops once neither waits for it any more.

The measurement itself (minutes for 2.7B) is replaced by a fake that reports progress layer by layer
until released: what is tested is the queue and the page, not the measurement."""

from __future__ import annotations

import threading
import time

import pytest

from inspector.serve.jobs import CANCELLED, QUEUE, RUNNING
from inspector.ui import hardware
from inspector.ui import jobs as ui_jobs
from tests.test_app import _app, _open_local

NAME = "MMfreeLM-2.7B"


class FakeMeasurement:
    def __init__(self):
        self.calls = 0
        self.layers = 0
        self.release = threading.Event()

    def __call__(self, name, qc, measure=True, on_progress=None, **_):
        if not measure:  # the page asking for a cached measurement: there is none
            return None
        self.calls += 1
        while not self.release.is_set():
            self.layers += 1
            on_progress(self.layers % 32, 33, f"layer {self.layers % 32 + 1} of 32")  # raises once cancelled
            time.sleep(0.02)


@pytest.fixture()
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path / "cache"))  # nothing measured yet
    hardware.cached_published.clear()
    hardware.cached_published_evaluation.clear()
    measurement = FakeMeasurement()
    monkeypatch.setattr(hardware, "published_activity", measurement)
    yield measurement
    measurement.release.set()


class Sessions:
    """AppTest gives every app the same session id; these two tabs must be two sessions."""

    def __init__(self, monkeypatch):
        self.current = "tab-a"
        monkeypatch.setattr(ui_jobs, "session_id", lambda: self.current)

    def run(self, name: str, at):
        self.current = name
        return at.run()


def _hardware_page(tiny_checkpoint):
    at = _open_local(_app(), str(tiny_checkpoint), tokens=4)
    at.switch_page("pages/hardware.py").run()
    assert not at.exception, at.exception
    return at


def _wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_sessions_share_one_measurement_and_it_stops_when_both_cancel(tiny_checkpoint, fake, monkeypatch):
    tabs = Sessions(monkeypatch)
    first, second = _hardware_page(tiny_checkpoint), _hardware_page(tiny_checkpoint)
    first.button(key=f"measure_{NAME}").click()
    tabs.run("tab-a", first)
    assert not first.exception, first.exception
    job = hardware.measurement_job(NAME, hardware.QuantConfig())
    assert job is not None
    _wait(lambda: fake.layers > 0)
    second.button(key=f"measure_{NAME}").click()
    tabs.run("tab-b", second)
    assert not second.exception, second.exception
    assert hardware.measurement_job(NAME, hardware.QuantConfig()) is job and job.waiters == {"tab-a", "tab-b"}
    for name, at in (("tab-a", first), ("tab-b", second)):
        tabs.run(name, at)
        bars = [e for e in at.get("progress") if f"Measuring {NAME}" in (e.proto.text or "")]
        assert bars, "the page shows the running measurement's progress"
        assert at.button(key=f"cancel_measure_{NAME}")
    assert fake.calls == 1  # one job, not two in parallel

    first.button(key=f"cancel_measure_{NAME}").click()
    tabs.run("tab-a", first)
    time.sleep(0.2)
    assert job.state == RUNNING and fake.calls == 1 and job.waiters == {"tab-b"}  # the other tab still waits
    second.button(key=f"cancel_measure_{NAME}").click()
    tabs.run("tab-b", second)
    assert job.wait(10) and job.state == CANCELLED  # nobody waits: it stopped at its next layer
    layers = fake.layers
    time.sleep(0.2)
    assert fake.layers == layers and QUEUE.running() == []
    tabs.run("tab-b", second)
    assert not second.exception, second.exception
    assert any("was cancelled" in i.value for i in second.info)
