"""`kill -USR1 <pid>` makes a running server print every thread's Python stack to its stderr.

Why: a server that stops answering new sessions shows nothing in its log; the stacks say which
thread waits for what. Python's faulthandler writes them from the signal handler itself, so it
works even when every Python thread is blocked. POSIX only (no SIGUSR1 on Windows).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading

_lock = threading.Lock()
_enabled = False


def enable_stack_dumps() -> bool:
    """Install the SIGUSR1 stack dump once per process; False where the platform has no SIGUSR1 or there is no stderr."""
    global _enabled
    stream = sys.__stderr__ or sys.stderr
    if not hasattr(signal, "SIGUSR1") or stream is None:
        return False
    with _lock:
        if not _enabled:
            faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True)
            _enabled = True
    return True
