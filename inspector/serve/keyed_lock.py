"""One computation per key at a time across threads, with waits that a stopped session can leave.

Why: two browser sessions asking for the same model, or the same analysis, should compute it once
while the second waits for the first. A plain `with lock:` is the wrong wait for that in a
Streamlit server: Streamlit stops a script (tab closed, Stop clicked, a setting changed) by raising
an exception at the script's next `st` call, and a thread blocked in `lock.acquire()` makes none.
Such a thread stays blocked as long as the computation it waits for runs, its session can neither
stop nor rerun, and if that computation never ends, neither does the wait. Here a waiter polls and
calls `on_wait(seconds_waited)` between polls (the app redraws a "waiting for another session"
message there, which is where Streamlit can stop it), and gives up after `timeout_s` with a
`WaitTimeoutError` that says what it waited for.

Each key's lock exists only while some thread holds or waits for it: a lock dropped from the table
while still held would let the next thread create a second lock for the same key and compute
beside the first, and a table that is never pruned grows with every key ever used.

Streamlit-free: the callers in `inspector.ui` and `inspector.serve.run_cache` supply `on_wait`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator, Optional

from inspector.errors import InspectorError

# on_wait(seconds): called about every POLL_S while waiting; it may raise to give up the wait.
WaitFn = Callable[[float], None]
POLL_S = 0.25


class WaitTimeoutError(InspectorError):
    """Waited longer than the deadline for another thread's computation of the same key."""


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # threads holding or waiting for `lock`


class KeyedLocks:
    """A lock per key, created on first use and dropped when its last holder or waiter leaves."""

    def __init__(self, poll_s: float = POLL_S):
        self.poll_s = poll_s
        self._table_lock = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}

    @contextmanager
    def hold(
        self, key: Hashable, on_wait: Optional[WaitFn] = None, timeout_s: Optional[float] = None,
        what: str = "another computation of the same thing",
    ) -> Iterator[None]:
        """Hold `key`'s lock for the block; wait for it as described in the module docstring.

        `what` completes the timeout message: "Waited N s for <what>".
        """
        with self._table_lock:
            slot = self._slots.setdefault(key, _Slot())
            slot.users += 1
        try:
            self._acquire(slot.lock, on_wait, timeout_s, what)
            try:
                yield
            finally:
                slot.lock.release()
        finally:  # also when on_wait raised or the wait timed out
            with self._table_lock:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[key]

    def _acquire(self, lock: threading.Lock, on_wait: Optional[WaitFn], timeout_s: Optional[float], what: str) -> None:
        if lock.acquire(blocking=False):
            return
        start = time.monotonic()
        while True:
            waited = time.monotonic() - start
            if timeout_s is not None and waited >= timeout_s:
                raise WaitTimeoutError(
                    f"Waited {waited:.0f} s for {what}, which has not finished; gave up so this page can go on. "
                    "Try again, or change a setting to run your own."
                )
            if on_wait is not None:
                on_wait(waited)  # may raise (a stopped session): the finally in hold() tidies up
            step = self.poll_s if timeout_s is None else max(min(self.poll_s, timeout_s - waited), 0.0)
            if lock.acquire(timeout=step):
                return

    def __len__(self) -> int:
        """Keys held or waited for now (0 when idle: nothing leaks)."""
        with self._table_lock:
            return len(self._slots)
