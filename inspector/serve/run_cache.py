"""Finished analyses shared by every session of the app process, under one memory budget.

Why process-wide: two browser tabs with the same settings want the same analysis, and computing it
twice costs seconds and doubles the memory. Why owners: a session's runs must be freed when the
session ends (a closed tab must give its memory back), but not while another session still shows
them. So every entry records which sessions use it; an entry nobody uses is dropped at once, each
session keeps at most `per_owner` entries, and the least recently used entries are evicted when
the total exceeds `budget_bytes`.

Streamlit-free: `inspector.ui.runs` supplies the owners (session ids) and tells the cache when a
session ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterator, Optional

from inspector.serve.keyed_lock import KeyedLocks, WaitFn

BUDGET_VARIABLE = "INSPECTOR_RUN_CACHE_MB"
DEFAULT_BUDGET_MB = 2048
PER_OWNER = 4


@dataclass
class _Entry:
    value: Any
    nbytes: int
    owners: list[Hashable] = field(default_factory=list)


def _release_to_os() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, and RSS would not drop)."""
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class RunCache:
    """An LRU map key -> value with owners, a per-owner limit and a total byte budget."""

    def __init__(self, budget_bytes: int, per_owner: int = PER_OWNER):
        self.budget_bytes = budget_bytes
        self.per_owner = per_owner
        self._entries: "OrderedDict[Hashable, _Entry]" = OrderedDict()
        self._lock = threading.RLock()
        self._computing = KeyedLocks()

    # -- use ----------------------------------------------------------------------------------
    def get(self, key: Hashable, owner: Hashable) -> Any | None:
        """The value for `key`, now also owned by `owner` (None if absent)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            self._own(key, entry, owner)
            return entry.value

    def put(self, key: Hashable, value: Any, nbytes: int, owner: Hashable) -> None:
        with self._lock:
            entry = self._entries.get(key) or _Entry(value, int(nbytes))
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._own(key, entry, owner)
            self._evict(keep=key)
        _release_to_os()  # what computing the value allocated and freed, and anything evicted

    @contextmanager
    def computing(self, key: Hashable, on_wait: Optional[WaitFn] = None, timeout_s: Optional[float] = None) -> Iterator[None]:
        """Held while one session computes `key`, so that a second session with the same settings
        waits for that result instead of computing it again.

        The wait calls `on_wait(seconds)` between polls and ends with a `WaitTimeoutError` after
        `timeout_s` (see `inspector.serve.keyed_lock`): a waiting session must stay stoppable, whatever
        the session it waits for is doing."""
        with self._computing.hold(key, on_wait, timeout_s, what="another session computing the same analysis"):
            yield

    def computing_now(self) -> int:
        """Keys being computed or waited for (0 when idle)."""
        return len(self._computing)

    def release(self, owner: Hashable) -> int:
        """Forget `owner` (its session ended); drop what nobody else uses. Returns entries dropped."""
        with self._lock:
            dropped = 0
            for key in list(self._entries):
                entry = self._entries[key]
                if owner in entry.owners:
                    entry.owners.remove(owner)
                    if not entry.owners:
                        del self._entries[key]
                        dropped += 1
        if dropped:
            _release_to_os()
        return dropped

    # -- bookkeeping --------------------------------------------------------------------------
    def _own(self, key: Hashable, entry: _Entry, owner: Hashable) -> None:
        if owner not in entry.owners:
            entry.owners.append(owner)
        owned = [k for k, e in self._entries.items() if owner in e.owners]  # oldest first
        for old in owned[: max(len(owned) - self.per_owner, 0)]:
            other = self._entries[old]
            other.owners.remove(owner)
            if not other.owners:
                del self._entries[old]

    def _evict(self, keep: Hashable) -> int:
        freed = 0
        for key in list(self._entries):
            if self.total_bytes() <= self.budget_bytes:
                break
            if key != keep:
                del self._entries[key]
                freed += 1
        return freed

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def owners(self) -> set[Hashable]:
        with self._lock:
            return {o for e in self._entries.values() for o in e.owners}


def default_budget_bytes() -> int:
    raw = os.environ.get(BUDGET_VARIABLE, "")
    try:
        megabytes = int(raw) if raw.strip() else DEFAULT_BUDGET_MB
    except ValueError:
        megabytes = DEFAULT_BUDGET_MB
    return max(megabytes, 1) * 2**20


RUNS = RunCache(default_budget_bytes())
