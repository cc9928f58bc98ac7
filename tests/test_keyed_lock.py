"""Waits between sessions that stay stoppable (issue 11, the server stall): the per-key locks under the
shared model loading (`ui.sidebar.cached_checkpoint`) and the shared run cache (`RunCache.computing`),
and the session reaper (`ui.lifecycle`). Threads stand in for Streamlit's script threads; an
`on_wait` that raises stands in for Streamlit stopping a script (tab closed, Stop, a new setting)."""

from __future__ import annotations

import threading
import time

import pytest

from inspector.serve.keyed_lock import KeyedLocks, WaitTimeoutError
from inspector.serve.run_cache import RunCache


class Stopped(BaseException):
    """What Streamlit raises in a stopped script thread (StopException is a BaseException too)."""


def _holder(hold, key, started: threading.Event, release: threading.Event) -> threading.Thread:
    def body() -> None:
        with hold(key):
            started.set()
            release.wait(30)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread


def test_a_stopped_waiter_leaves_the_wait_while_the_holder_keeps_computing():
    locks = KeyedLocks(poll_s=0.02)
    started, release = threading.Event(), threading.Event()
    holder = _holder(locks.hold, "k", started, release)
    stop = threading.Event()
    outcome: list[str] = []

    def on_wait(seconds: float) -> None:
        if stop.is_set():
            raise Stopped()

    def waiter() -> None:
        try:
            with locks.hold("k", on_wait):
                outcome.append("entered")
        except Stopped:
            outcome.append("stopped")

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.2)
    stop.set()  # the waiting tab is closed while the other session still computes
    thread.join(5)
    assert not thread.is_alive() and outcome == ["stopped"]
    release.set()
    holder.join(5)
    assert len(locks) == 0  # neither the holder nor the stopped waiter left a lock behind
    with locks.hold("k"):  # and the key is free at once
        pass


def test_a_wait_gives_up_after_its_deadline_with_a_message():
    locks = KeyedLocks(poll_s=0.02)
    started, release = threading.Event(), threading.Event()
    holder = _holder(locks.hold, "k", started, release)
    waited: list[float] = []
    t0 = time.monotonic()
    with pytest.raises(WaitTimeoutError, match="Waited 0 s for the test computation"):
        with locks.hold("k", waited.append, timeout_s=0.3, what="the test computation"):
            pass
    assert 0.3 <= time.monotonic() - t0 < 3
    assert waited and waited == sorted(waited)  # told how long it has waited, every poll
    release.set()
    holder.join(5)
    assert len(locks) == 0


def test_a_failed_computation_frees_the_key_for_the_next_session():
    locks = KeyedLocks(poll_s=0.02)
    with pytest.raises(RuntimeError):
        with locks.hold("k"):
            raise RuntimeError("load failed")
    assert len(locks) == 0
    done = threading.Event()
    threading.Thread(target=lambda: (locks.hold("k").__enter__(), done.set()), daemon=True).start()
    assert done.wait(5)


def test_the_run_cache_wait_is_stoppable():
    cache = RunCache(budget_bytes=10_000)
    started, release = threading.Event(), threading.Event()
    holder = _holder(cache.computing, "k", started, release)
    stop = threading.Event()
    result: list[str] = []

    def on_wait(seconds: float) -> None:
        if stop.is_set():
            raise Stopped()

    def closed_tab() -> None:
        try:
            with cache.computing("k", on_wait):
                result.append("entered")
        except Stopped:
            result.append("stopped")

    thread = threading.Thread(target=closed_tab, daemon=True)
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(5)
    release.set()
    holder.join(5)
    assert result == ["stopped"] and cache.computing_now() == 0


def test_releasing_a_session_never_lets_two_sessions_compute_the_same_run_at_once():
    """A tab closing (release) while another tab computes the same settings must not hand a third
    tab a second lock for the same key (the old table of per-key locks dropped it on release)."""
    cache = RunCache(budget_bytes=10_000)
    cache.put("k", "old result", 10, owner="tab-0")
    inside, peak = [0], [0]
    count_lock = threading.Lock()
    first_inside, go_on = threading.Event(), threading.Event()

    def session(owner: str, first: bool) -> None:
        with cache.computing("k"):
            with count_lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            if first:
                first_inside.set()
                go_on.wait(10)
            else:
                time.sleep(0.05)
            with count_lock:
                inside[0] -= 1

    first = threading.Thread(target=session, args=("tab-1", True))
    first.start()
    assert first_inside.wait(5)
    cache.release("tab-0")  # the entry goes (nobody else owned it) while tab-1 recomputes it
    others = [threading.Thread(target=session, args=(f"tab-{i}", False)) for i in range(2, 5)]
    for thread in others:
        thread.start()
    time.sleep(0.3)
    go_on.set()
    for thread in [first, *others]:
        thread.join(10)
    assert peak[0] == 1 and cache.computing_now() == 0


def test_a_session_waiting_for_another_sessions_model_load_can_be_stopped(monkeypatch, tiny_checkpoint):
    from inspector.lm.catalog import checkpoint_fingerprint
    from inspector.ui import sidebar

    monkeypatch.setattr(sidebar, "_MODELS", type(sidebar._MODELS)())
    loading, release = threading.Event(), threading.Event()
    real_load = sidebar.load_checkpoint

    def slow_load(directory, on_progress=None):
        loading.set()
        release.wait(30)
        return real_load(directory, on_progress=on_progress)

    monkeypatch.setattr(sidebar, "load_checkpoint", slow_load)
    fingerprint = checkpoint_fingerprint(tiny_checkpoint)
    results: dict[str, object] = {}

    def first() -> None:
        results["first"] = sidebar.cached_checkpoint(str(tiny_checkpoint), fingerprint)

    def stopped_second() -> None:
        def on_wait(seconds: float) -> None:
            if seconds > 0.2:
                raise Stopped()

        try:
            sidebar.cached_checkpoint(str(tiny_checkpoint), fingerprint, on_wait=on_wait)
        except Stopped:
            results["second"] = "stopped"

    one = threading.Thread(target=first, daemon=True)
    one.start()
    assert loading.wait(10)
    two = threading.Thread(target=stopped_second, daemon=True)
    two.start()
    two.join(5)
    assert not two.is_alive() and results.get("second") == "stopped"
    release.set()
    one.join(60)
    third = sidebar.cached_checkpoint(str(tiny_checkpoint), fingerprint)  # loaded once, then shared
    assert results["first"] is third and len(sidebar._LOADS) == 0


def test_a_slow_clean_up_does_not_hold_up_other_sessions(monkeypatch):
    from inspector.ui import lifecycle

    freed, stuck = [], threading.Event()
    monkeypatch.setattr(lifecycle, "_callbacks", {})
    monkeypatch.setattr(lifecycle, "ended_sessions", lambda: [sid for sid in ("tab-1", "tab-2") if sid in lifecycle._callbacks])
    lifecycle._callbacks["tab-1"] = {"lava": lambda: stuck.wait(30)}  # e.g. waiting for someone's Lava run
    lifecycle._callbacks["tab-2"] = {"runs": lambda: freed.append("tab-2")}
    threads = lifecycle.reap()
    threads[1].join(5)
    assert freed == ["tab-2"]  # freed although tab-1's clean-up still waits
    stuck.set()
    threads[0].join(5)
    assert lifecycle._callbacks == {}


def test_the_reaper_survives_an_error(monkeypatch):
    from inspector.ui import lifecycle

    calls = []

    def failing() -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("runtime not ready")
        return []

    monkeypatch.setattr(lifecycle, "POLL_S", 0.01)
    monkeypatch.setattr(lifecycle, "ended_sessions", failing)
    stop = threading.Event()
    thread = threading.Thread(target=lifecycle._poll, args=(stop,), daemon=True)
    thread.start()
    deadline = time.time() + 5
    while len(calls) < 3 and time.time() < deadline:
        time.sleep(0.01)
    alive = thread.is_alive()
    stop.set()
    thread.join(5)
    assert len(calls) >= 3 and alive  # it polled again after the error
