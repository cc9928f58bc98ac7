"""A sweep running in a background thread, so the app stays usable while Ray works.

The job only holds progress (phase, finished points, the last error); the results themselves are
the Parquet file, which the page re-reads as points arrive. Stopping sets an event: points still
running are cancelled (the runner ends the Ray actors holding them), finished ones stay in the
file, and starting again resumes. The app runs it through the job queue (`inspector.ui.sweeps`):
`run` in the queue's thread, with the queue job's cancel event as the stop event.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from inspector.sweep.evaluate import SweepSpec
from inspector.sweep.study import run_sweep


@dataclass
class SweepJob:
    spec: SweepSpec
    out_dir: Path
    options: dict[str, Any] = field(default_factory=dict)  # run_sweep keyword arguments
    phase: str = "waiting for its turn"
    done: int = 0
    total: int = 0
    failed: int = 0
    error: Optional[str] = None
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None
    _active: bool = False  # inside run()

    @property
    def running(self) -> bool:
        return self._active or (self._thread is not None and self._thread.is_alive())

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def start(self) -> "SweepJob":
        self._thread = threading.Thread(target=self._run, name=f"sweep {self.out_dir.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def wait(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_phase(self, name: str, count: int) -> None:
        self.phase, self.done, self.total = name, 0, count

    def _on_result(self, row: dict[str, Any], done: int, total: int) -> None:
        self.done, self.total = done, total
        if row.get("status") != "ok":
            self.failed += 1

    def run(self, stop_event: Optional[threading.Event] = None) -> None:
        """Run the sweep in the calling thread (a job queue's thread); `stop_event` replaces the own one."""
        if stop_event is not None:
            self.stop_event = stop_event
        self._run()

    def _run(self) -> None:
        self._active, self.phase = True, "starting Ray"
        try:
            run_sweep(
                self.spec, self.out_dir, on_result=self._on_result, on_phase=self._on_phase, stop=self.stop_event, **self.options,
            )
            self.phase = "stopped" if self.stop_event.is_set() else "finished"
        except Exception as exc:  # shown on the page; the thread must never die silently
            self.error = str(exc) or type(exc).__name__
            self.phase = "failed"
        finally:
            self.finished = time.time()
            self._active = False
