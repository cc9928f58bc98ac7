"""One queue for the long work a visitor can start: a per-server limit on heavy jobs, a per-session
limit, one job per key, and jobs that stop when nobody waits for them.

Why: on a shared server, a published-size measurement (minutes, GBs), a sweep (every core, through
Ray) or a long analysis (a large checkpoint, a Lava run) started from several tabs would otherwise
run side by side until the machine gives out, and keep running after every tab closed.

Two kinds of work go through the same line, and both count against the same limit
(`INSPECTOR_HEAVY_JOBS`, default 1, jobs running at once in this server process):

- **Background jobs** (`JobQueue.submit`): `work(job)` runs in a thread of its own once the job's
  turn comes; the result stays on the job for every session waiting for it. A second request with
  the same key joins the job already queued or running instead of starting another (two tabs
  asking for one measurement get one job and both see its result). Progress and cancellation go
  through the `Job`: `job.report(fraction, text)` at the work's progress points, which raises
  `JobCancelled` once the job was cancelled, so a thread job stops at its next progress point; a
  job that runs a subprocess registers it (`job.attach_process`) and cancelling kills it. Work that
  runs on Ray passes `job.cancel_event` to the Ray driver loop, which then ends its actors.
- **Inline slots** (`JobQueue.slot`): a Streamlit script that computes in its own thread (an
  analysis streaming its tokens into the page) waits in the same line for a turn, calling
  `on_wait(position)` between polls so that Streamlit can stop the script while it waits.
  De-duplication of analyses stays where it was, in `inspector.serve.run_cache.RunCache.computing`
  (the same settings in two tabs compute once); the slot only bounds how many run at once.

Waiters: every job records the sessions that wait for it. A session that ends (the reaper in
`inspector.ui.lifecycle` calls `leave_all`) or presses Cancel (`leave`) stops waiting; a job that
nobody waits for any more is cancelled. The per-session limit (`INSPECTOR_JOBS_PER_SESSION`,
default 2) counts the unfinished jobs a session waits for, so one visitor cannot fill the line.

Streamlit-free: `inspector.ui.jobs` draws the position, the progress and the Cancel button.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Optional

from inspector.errors import InspectorError

HEAVY_VARIABLE = "INSPECTOR_HEAVY_JOBS"
PER_SESSION_VARIABLE = "INSPECTOR_JOBS_PER_SESSION"
DEFAULT_HEAVY = 1
DEFAULT_PER_SESSION = 2
POLL_S = 0.25
log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class JobCancelled(InspectorError):
    """The job was cancelled (Cancel pressed, or nobody waits for it any more)."""


class JobLimitError(InspectorError):
    """This session already waits for as many jobs as it may."""


@dataclass(eq=False)
class Job:
    """One unit of long work: its state, progress, result and the sessions waiting for it."""

    key: Hashable
    title: str
    work: Optional[Callable[["Job"], Any]] = None  # None for an inline slot
    waiters: set = field(default_factory=set)
    state: str = QUEUED
    fraction: float = 0.0
    text: str = "waiting for its turn"
    result: Any = None
    detail: Any = None  # what the page shows about the work (e.g. a sweep's phase and points)
    error: Optional[str] = None
    submitted: float = field(default_factory=time.monotonic)
    finished_at: Optional[float] = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _turn: threading.Event = field(default_factory=threading.Event)  # set when an inline slot may run
    _done: threading.Event = field(default_factory=threading.Event)
    _process: Optional[subprocess.Popen] = None
    _thread: Optional[threading.Thread] = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def report(self, fraction: float, text: str = "") -> None:
        """A progress point: record the progress; raise `JobCancelled` if the job was cancelled."""
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        if text:
            self.text = text
        self.check()

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled(f"{self.title} was cancelled")

    def attach_process(self, process: subprocess.Popen) -> None:
        """A subprocess doing this job's work: killed when the job is cancelled."""
        self._process = process
        if self.cancelled:
            self._kill()

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job finished (tests and the CLI; the pages poll instead)."""
        return self._done.wait(timeout)


class JobQueue:
    """The line of heavy jobs of one server process (see the module docstring)."""

    def __init__(self, max_heavy: int = DEFAULT_HEAVY, per_session: int = DEFAULT_PER_SESSION, keep_finished_s: float = 600.0):
        self.max_heavy = max(int(max_heavy), 1)
        self.per_session = max(int(per_session), 1)
        self.keep_finished_s = keep_finished_s  # how long a finished job's result stays for its waiters
        self._lock = threading.RLock()
        self._line: list[Job] = []  # queued, oldest first
        self._running: list[Job] = []
        self._jobs: dict[Hashable, Job] = {}  # key -> the job with that key (queued, running or recently finished)

    # -- asking for work -----------------------------------------------------------------------
    def submit(self, key: Hashable, title: str, work: Callable[[Job], Any], waiter: Hashable, detail: Any = None) -> Job:
        """The job for `key`, joined by `waiter`: the one queued or running, else a new one.

        A finished job keeps its result and state for `keep_finished_s` (`job(key)`: what its waiters
        read and the page shows); asking again after it finished starts the work again (a measurement
        lands in its disk cache, so a page asks again only when that result is not there)."""
        with self._lock:
            self._forget_old()
            job = self._jobs.get(key)
            if job is not None and not job.finished:
                job.waiters.add(waiter)
                return job
            self._check_limit(waiter)
            job = Job(key, title, work, {waiter}, detail=detail)
            self._jobs[key] = job
            self._line.append(job)
            self._dispatch()
            return job

    def join(self, key: Hashable, waiter: Hashable) -> Optional[Job]:
        """`waiter` now also waits for the unfinished job with `key` (None if there is none)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.finished:
                return None
            job.waiters.add(waiter)
            return job

    @contextmanager
    def slot(
        self, key: Hashable, title: str, waiter: Hashable, on_wait: Optional[Callable[[int], None]] = None,
    ) -> Iterator[Job]:
        """Wait in line for a turn, then run the block in the calling thread as a heavy job.

        `on_wait(position)` is called between polls (position 1 = next in line) and may raise to give
        up the place (a stopped Streamlit script). The block should call `job.report` at its
        progress points so that a cancelled slot stops there."""
        job = Job(("slot", key, id(object())), title, None, {waiter})
        with self._lock:
            self._check_limit(waiter)
            self._line.append(job)
            self._dispatch()
        try:
            while not job._turn.wait(POLL_S):
                job.check()
                if on_wait is not None:
                    on_wait(self.position(job))
            job.check()
            yield job
            job.state = DONE
        except JobCancelled:
            job.state = CANCELLED
            raise
        except BaseException:
            job.state = FAILED if job._turn.is_set() else CANCELLED
            raise
        finally:
            self._finish(job)

    def _check_limit(self, waiter: Hashable) -> None:
        mine = [j for j in (*self._running, *self._line) if waiter in j.waiters]
        if len(mine) >= self.per_session:
            raise JobLimitError(
                f"This session already waits for {len(mine)} long job(s) ({', '.join(j.title for j in mine)}); "
                f"at most {self.per_session} per session ({PER_SESSION_VARIABLE}). Wait for one to finish or cancel it."
            )

    # -- leaving -------------------------------------------------------------------------------
    def leave(self, job: Job, waiter: Hashable) -> None:
        """`waiter` no longer waits for `job`; a job nobody waits for is cancelled."""
        with self._lock:
            job.waiters.discard(waiter)
            if not job.waiters and not job.finished:
                self._cancel(job)

    def leave_all(self, waiter: Hashable) -> int:
        """A session ended: it waits for nothing any more. Returns how many jobs were cancelled."""
        with self._lock:
            jobs = [j for j in (*self._running, *self._line, *self._jobs.values()) if waiter in j.waiters]
            cancelled = 0
            for job in dict.fromkeys(jobs):
                was = job.cancelled
                self.leave(job, waiter)
                cancelled += int(job.cancelled and not was)
            return cancelled

    def cancel(self, job: Job) -> None:
        """Stop `job` for every waiter."""
        with self._lock:
            if not job.finished:
                self._cancel(job)

    def _cancel(self, job: Job) -> None:
        job.cancel_event.set()
        job._kill()
        if job in self._line:  # never started: done at once
            self._line.remove(job)
            job.state = CANCELLED
            job.finished_at = time.monotonic()
            job._done.set()
            job._turn.set()  # an inline slot waiting for its turn wakes up and raises JobCancelled
        # a running job stops at its next progress point (thread), or its process was killed

    # -- looking -------------------------------------------------------------------------------
    def position(self, job: Job) -> int:
        """0 when running or finished, else the place in line (1 = next)."""
        with self._lock:
            return self._line.index(job) + 1 if job in self._line else 0

    def job(self, key: Hashable) -> Optional[Job]:
        with self._lock:
            self._forget_old()
            return self._jobs.get(key)

    def running(self) -> list[Job]:
        with self._lock:
            return list(self._running)

    def queued(self) -> list[Job]:
        with self._lock:
            return list(self._line)

    def waiting_for(self, waiter: Hashable) -> list[Job]:
        with self._lock:
            return [j for j in (*self._running, *self._line) if waiter in j.waiters]

    # -- running -------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        with self._lock:
            while self._line and len(self._running) < self.max_heavy:
                job = self._line.pop(0)
                job.state = RUNNING
                job.text = "started"
                self._running.append(job)
                if job.work is None:
                    job._turn.set()
                else:
                    job._thread = threading.Thread(target=self._run, args=(job,), name=f"job {job.title}", daemon=True)
                    job._thread.start()

    def _run(self, job: Job) -> None:
        try:
            job.check()
            job.result = job.work(job)
            job.state = CANCELLED if job.cancelled else DONE
            if job.state == DONE:
                job.fraction = 1.0
        except JobCancelled:
            job.state = CANCELLED
        except Exception as exc:  # shown on the page; the thread must never die silently
            if job.cancelled:  # e.g. a killed subprocess's error
                job.state = CANCELLED
            else:
                log.exception("job %s failed", job.title)
                job.state, job.error = FAILED, str(exc) or type(exc).__name__
        finally:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            if job in self._line:
                self._line.remove(job)
            if not job.finished:
                job.state = CANCELLED
            job.finished_at = time.monotonic()
            job.work = None  # nothing it referenced is kept alive by the finished job
            job._process = None
            job._done.set()
            if job.state != DONE and self._jobs.get(job.key) is job:
                job.result = None
            self._dispatch()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key, job in list(self._jobs.items()):
            if job.finished and job.finished_at is not None and now - job.finished_at > self.keep_finished_s:
                del self._jobs[key]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return max(int(raw), 1) if raw.strip() else default
    except ValueError:
        log.warning("%s=%r is not a whole number; using %d", name, raw, default)
        return default


QUEUE = JobQueue(_env_int(HEAVY_VARIABLE, DEFAULT_HEAVY), _env_int(PER_SESSION_VARIABLE, DEFAULT_PER_SESSION))
