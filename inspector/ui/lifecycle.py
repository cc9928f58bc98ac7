"""Knowing when a browser session ends, so that what it held (runs, Lava graphs) can be freed.

Streamlit has no "session ended" callback. The runtime does know which sessions are connected
(`Runtime.is_active_session`), so a daemon thread polls it every `POLL_S` seconds and runs the
callbacks registered for sessions that are gone (tab closed, connection lost). A session that
reconnects later simply recomputes what it needs.

Each ended session's callbacks run in a thread of their own: a clean-up may wait (closing a Lava
graph waits for the generation using the simulator), and one waiting clean-up must not keep every
later session's memory from being freed. The poller survives any error, and is started again if it
ever died.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

POLL_S = 10.0
log = logging.getLogger(__name__)
_callbacks: dict[str, dict[str, Callable[[], None]]] = {}
_lock = threading.Lock()
_poller: threading.Thread | None = None


def session_id() -> str:
    """The current browser session's id (a fixed name outside a Streamlit script run)."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def on_session_end(name: str, callback: Callable[[], None]) -> None:
    """Run `callback` once when the current session ends (registering `name` again replaces it)."""
    global _poller
    with _lock:
        _callbacks.setdefault(session_id(), {})[name] = callback
        if _poller is None or not _poller.is_alive():
            _poller = threading.Thread(target=_poll, name="inspector-session-reaper", daemon=True)
            _poller.start()


def end_session(sid: str) -> None:
    """Run and forget a session's callbacks (called by the poller; tests call it directly)."""
    with _lock:
        callbacks = _callbacks.pop(sid, {})
    for name, callback in callbacks.items():
        try:
            callback()
        except Exception:  # one failing clean-up must not keep the others from running
            log.exception("clean-up %s of session %s failed", name, sid)


def ended_sessions() -> list[str]:
    """Sessions with callbacks that the runtime no longer counts as connected."""
    if not Runtime.exists():
        return []
    runtime = Runtime.instance()
    with _lock:
        known = list(_callbacks)
    return [sid for sid in known if not runtime.is_active_session(sid)]


def reap() -> list[threading.Thread]:
    """Start the clean-up of every ended session, each in its own thread (returned, for tests)."""
    threads = []
    for sid in ended_sessions():
        thread = threading.Thread(target=end_session, args=(sid,), name=f"inspector-end-{sid[:8]}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _poll(stop: threading.Event | None = None) -> None:
    while stop is None or not stop.is_set():
        time.sleep(POLL_S)
        try:
            reap()
        except Exception:  # never let the poller die: later sessions would never be freed
            log.exception("reaping ended sessions failed")
