"""A `LavaGraph` in its own spawned process, so Lava can run from any caller, the web app included.

Why: Lava starts its runtime by forking one process per process model. Forking a process that has
other threads (Streamlit's script threads, a test runner's, torch's thread pool) copies locks that
those threads held, and the forked runtime can deadlock on them. A process started with the
"spawn" method is a fresh interpreter whose only thread is the one that serves requests, so Lava
forks from a clean, single-threaded process there.

`LavaWorker` has the graph's methods (`token`, `reset_state`, `set_state`, `close`); each call is a
message over a pipe with a deadline, and a failure in the worker comes back as a `LavaBackendError`
with the worker's traceback instead of a hang.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from inspector.backends.lava.params import GraphSpec, SynapseWeights
from inspector.errors import InspectorError

# Deadlines after which a silent worker is reported as hung and stopped. Measured on 2 cores: a
# sample model starts in 4 s and runs a token in 0.5 s (the first, which compiles the graph, in
# 5 s); a 370M model starts in 17 s, compiles in 90 s and runs a token in 43 s.
START_TIMEOUT_S = 600.0
CALL_TIMEOUT_S = 900.0
log = logging.getLogger(__name__)
CALL_NAMES = {"token": "run a token", "reset_state": "reset the state", "set_state": "set the state"}


class LavaBackendError(InspectorError):
    """The Lava simulation failed or stopped answering; the message says what happened.

    A failure inside the worker keeps the worker's full traceback in `worker_traceback` (and the
    log); the message itself names the exception, as the UI shows it to the user.
    """

    def __init__(self, message: str, worker_traceback: str = ""):
        super().__init__(message)
        self.worker_traceback = worker_traceback


def _serve(conn: Connection, spec: GraphSpec, weights: SynapseWeights, target: str) -> None:
    """Worker main loop: build the graph, then answer (method, args) messages until told to close."""
    import faulthandler

    import torch

    faulthandler.enable()
    # A spawned process forces its own start method ("spawn") on entry, overriding the "fork" that
    # importing Lava chose; Lava's runtime processes must be forked (they inherit the graph).
    multiprocessing.set_start_method("fork", force=True)
    # Lava's runtime processes are children of this one: one process group, so closing can kill all.
    os.setpgrp()
    torch.set_num_threads(1)  # the worker forks Lava's runtime: keep it free of thread pools
    graph = None
    try:
        from inspector.backends.lava.graph import LavaGraph

        graph = LavaGraph(spec, weights, target)
        conn.send(("ok", None))
        while True:
            try:
                method, args = conn.recv()
            except EOFError:  # the parent went away
                return
            if method == "close":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", getattr(graph, method)(*args)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        if graph is not None:
            graph.close()
        conn.close()


def _shutdown(conn: Connection, process: multiprocessing.process.BaseProcess) -> None:
    """Ask the worker to stop its Lava runtime and exit; kill it if it does not."""
    try:
        if process.is_alive():
            conn.send(("close", ()))
            if conn.poll(30):
                conn.recv()
    except (OSError, EOFError):
        pass
    process.join(30)
    if process.pid is not None:
        try:  # the worker and any Lava runtime process it left behind
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process.join()
    conn.close()


class LavaWorker:
    """The graph's interface, served by a spawned process (see the module docstring)."""

    def __init__(self, spec: GraphSpec, weights: SynapseWeights, target: str = "sim"):
        """Arguments as for `LavaGraph` (plain data, pickled to the worker)."""
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        # Not a daemon: Lava's runtime starts child processes of its own from the worker.
        self._process = context.Process(target=_serve, args=(child, spec, weights, target), name="lava-graph")
        self._process.start()
        child.close()
        self._finalizer = weakref.finalize(self, _shutdown, self._conn, self._process)
        self._answer("start the Lava worker", START_TIMEOUT_S)

    def _answer(self, what: str, timeout: float) -> Any:
        try:
            ready = self._conn.poll(timeout)
            if not ready:
                self.close()
                raise LavaBackendError(f"the Lava simulation did not {what} within {timeout:.0f} s and was stopped")
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._process.exitcode
            self.close()
            raise LavaBackendError(f"the Lava worker process ended unexpectedly (exit code {code}) during: {what}") from exc
        if status == "error":
            log.error("Lava worker failed during %s:\n%s", what, value)
            last = value.strip().splitlines()[-1] if value.strip() else "unknown error"
            raise LavaBackendError(f"the Lava simulation failed during: {what} ({last})", value)
        return value

    def _call(self, method: str, *args: Any) -> Any:
        if not self._finalizer.alive:
            raise LavaBackendError("the Lava worker was closed")
        self._conn.send((method, args))
        return self._answer(CALL_NAMES.get(method, method), CALL_TIMEOUT_S)

    def token(self, codes: np.ndarray):
        return self._call("token", codes)

    def reset_state(self) -> None:
        self._call("reset_state")

    def set_state(self, states: list[np.ndarray]) -> None:
        self._call("set_state", states)

    def close(self) -> None:
        self._finalizer()
