"""Streamlit glue of the job queue (`inspector.serve.jobs`): a job's place in line, its progress, Cancel.

A page that started or joined a job draws `follow_job`: a fragment that redraws every second while
the job is queued or running, and reruns the whole page once the job has finished (so the page
reads the result). Every session that starts or joins a job is registered with the session reaper:
when its tab is closed it stops waiting, and a job nobody waits for any more stops.
"""

from __future__ import annotations

from typing import Callable, Optional

import streamlit as st

from inspector.serve.jobs import CANCELLED, FAILED, QUEUE, QUEUED, Job
from inspector.ui.lifecycle import on_session_end, session_id


def waiter() -> str:
    """This session, as a waiter of jobs; registered so that it stops waiting when the tab closes."""
    owner = session_id()
    on_session_end("jobs", lambda: QUEUE.leave_all(owner))
    return owner


def line_text(position: int) -> str:
    running = len(QUEUE.running())
    return (
        f"waiting in line, position {position}: {running} long job(s) running; this server runs at most "
        f"{QUEUE.max_heavy} at once"
    )


def job_status(
    job: Job, key: str, cancel_for_everyone: bool = False, describe: Optional[Callable[[Job], tuple[float, str]]] = None,
) -> None:
    """The job's position or progress and its Cancel button (nothing for a finished job).

    Cancel: this session stops waiting, and the job stops unless another session waits for it
    (`cancel_for_everyone`: it stops anyway, e.g. a sweep, whose finished points are kept).
    `describe(job)`: (fraction, text) when the work keeps its own progress."""
    if job.finished:
        return
    if job.cancelled:  # it stops at its next progress point
        st.progress(job.fraction, text=f"{job.title}: stopping (cancelled)…")
        return
    position = QUEUE.position(job)
    if job.state == QUEUED:
        st.progress(0.0, text=f"{job.title}: {line_text(position)}")
    else:
        fraction, text = describe(job) if describe is not None else (job.fraction, job.text)
        st.progress(fraction, text=f"{job.title}: {text}")
    owner = waiter()
    if owner not in job.waiters and not cancel_for_everyone:
        st.caption("Started by another session.")
    elif cancel_for_everyone:
        st.button("Stop", key=key, on_click=QUEUE.cancel, args=(job,), help="Stop it (for every session following it)")
    else:
        st.button(
            "Cancel", key=key, on_click=QUEUE.leave, args=(job, owner),
            help="Stop waiting for it; it stops unless another session waits for it too",
        )


def follow_job(job: Job, key: str, on_finished: Optional[Callable[[], None]] = None, **status) -> None:
    """Draw `job_status` every second until the job finishes, then `on_finished()` and rerun the page."""
    was_running = not job.finished

    @st.fragment(run_every=1.0 if was_running else None)
    def live() -> None:
        if job.finished:
            if was_running:
                if on_finished is not None:
                    on_finished()
                st.rerun()
            if job.state == FAILED:
                st.error(f"{job.title} failed: {job.error}")
            elif job.state == CANCELLED:
                st.info(f"{job.title} was cancelled.")
            return
        job_status(job, key, **status)

    live()
