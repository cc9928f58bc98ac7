"""The process-wide run cache: shared between owners, limited per owner and in bytes, freed when
an owner (a browser session) ends."""

from __future__ import annotations

import threading

from inspector.serve.run_cache import RunCache


def test_entries_are_shared_and_freed_when_no_owner_is_left():
    cache = RunCache(budget_bytes=10_000)
    cache.put("k", "analysis", 100, owner="tab-1")
    assert cache.get("k", owner="tab-2") == "analysis"  # a second tab with the same settings
    assert cache.release("tab-1") == 0  # tab-2 still shows it
    assert cache.get("k", owner="tab-3") == "analysis"
    cache.release("tab-2")
    assert cache.release("tab-3") == 1
    assert len(cache) == 0 and cache.total_bytes() == 0


def test_each_owner_keeps_at_most_per_owner_entries():
    cache = RunCache(budget_bytes=10_000, per_owner=2)
    for key in "abc":
        cache.put(key, key, 10, owner="tab")
    assert cache.get("a", owner="tab") is None  # the oldest went: nobody else used it
    assert cache.get("b", owner="other") == "b"
    cache.put("d", "d", 10, owner="tab")  # tab lets go of b, which "other" still holds
    assert cache.get("b", owner="x") == "b"


def test_the_budget_evicts_least_recently_used():
    cache = RunCache(budget_bytes=250)
    cache.put("a", "a", 100, owner="1")
    cache.put("b", "b", 100, owner="2")
    cache.get("a", owner="1")  # a is now the most recent
    cache.put("c", "c", 100, owner="3")
    assert cache.get("b", owner="2") is None and cache.get("a", owner="1") == "a"
    assert cache.total_bytes() <= 250
    cache.put("huge", "h", 1_000, owner="4")  # larger than the budget: kept alone (it was just computed)
    assert len(cache) == 1 and cache.get("huge", owner="4") == "h"


def test_a_second_session_waits_for_the_same_computation():
    cache = RunCache(budget_bytes=10_000)
    computed = []

    def session(owner: str) -> None:
        with cache.computing("k"):
            if cache.get("k", owner) is None:
                computed.append(owner)
                cache.put("k", "result", 10, owner)

    threads = [threading.Thread(target=session, args=(f"tab-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(computed) == 1


def test_sessions_the_runtime_no_longer_knows_are_ended(monkeypatch):
    from streamlit.runtime import Runtime

    from inspector.ui import lifecycle

    freed = []
    monkeypatch.setattr(lifecycle, "session_id", lambda: "closed-tab")
    lifecycle.on_session_end("runs", lambda: freed.append("runs"))
    monkeypatch.setattr(lifecycle, "session_id", lambda: "open-tab")
    lifecycle.on_session_end("runs", lambda: freed.append("other"))

    class FakeRuntime:
        def is_active_session(self, sid: str) -> bool:
            return sid == "open-tab"

    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: FakeRuntime()))
    ended = lifecycle.ended_sessions()
    assert "closed-tab" in ended and "open-tab" not in ended
    lifecycle.end_session("closed-tab")
    assert freed == ["runs"]
    lifecycle.end_session("open-tab")
