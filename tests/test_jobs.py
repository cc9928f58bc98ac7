"""The queue of long jobs: one job per key, a server-wide limit, a per-session limit, cancel, and
jobs that stop when nobody waits for them. Fake jobs: threads that wait on events."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from inspector.serve.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobCancelled, JobLimitError, JobQueue


def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Fake:
    """A job that counts its runs and steps until released (or cancelled at a progress point)."""

    def __init__(self, result="measured"):
        self.release = threading.Event()
        self.runs = 0
        self.steps = 0
        self.result = result

    def __call__(self, job):
        self.runs += 1
        while not self.release.is_set():
            self.steps += 1
            job.report(0.5, f"step {self.steps}")  # raises JobCancelled once cancelled
            time.sleep(0.01)
        return self.result


def test_two_sessions_asking_for_one_measurement_get_one_job_and_both_see_its_result():
    queue, work = JobQueue(max_heavy=1), Fake()
    a = queue.submit(("measure", "2.7B"), "Measure 2.7B", work, "tab-a")
    b = queue.submit(("measure", "2.7B"), "Measure 2.7B", Fake(), "tab-b")
    assert a is b and a.waiters == {"tab-a", "tab-b"}
    until(lambda: work.steps > 0)
    assert a.state == RUNNING and a.text.startswith("step")
    work.release.set()
    assert a.wait(5)
    assert work.runs == 1 and a.state == DONE and a.result == "measured" and a.fraction == 1.0
    assert queue.job(("measure", "2.7B")).result == "measured"  # a page redrawn later still finds it
    # asking again after it finished is a new run (the page asks only when the result is not on disk)
    again = Fake()
    again.release.set()
    c = queue.submit(("measure", "2.7B"), "Measure 2.7B", again, "tab-c")
    assert c is not a and c.wait(5) and again.runs == 1


def test_the_server_limit_holds_and_the_line_moves_in_order():
    queue = JobQueue(max_heavy=1, per_session=5)
    works = [Fake(i) for i in range(3)]
    jobs = [queue.submit(("job", i), f"job {i}", works[i], f"tab-{i}") for i in range(3)]
    until(lambda: works[0].steps > 0)
    assert [j.state for j in jobs] == [RUNNING, QUEUED, QUEUED]
    assert [queue.position(j) for j in jobs] == [0, 1, 2]
    time.sleep(0.1)
    assert works[1].runs == works[2].runs == 0  # never two at once
    works[0].release.set()
    until(lambda: works[1].steps > 0)
    assert len(queue.running()) == 1 and queue.position(jobs[2]) == 1
    works[1].release.set()
    works[2].release.set()
    assert jobs[2].wait(5) and [j.result for j in jobs] == [0, 1, 2]


def test_two_heavy_jobs_at_once_when_the_limit_is_two():
    queue = JobQueue(max_heavy=2, per_session=5)
    works = [Fake() for _ in range(3)]
    jobs = [queue.submit(("job", i), f"job {i}", works[i], "tab") for i in range(3)]
    until(lambda: works[0].steps > 0 and works[1].steps > 0)
    assert jobs[2].state == QUEUED
    for work in works:
        work.release.set()
    assert all(j.wait(5) for j in jobs)


def test_the_per_session_limit_refuses_with_a_message():
    queue = JobQueue(max_heavy=1, per_session=2)
    works = [Fake() for _ in range(3)]
    queue.submit(("job", 0), "job 0", works[0], "tab")
    queue.submit(("job", 1), "job 1", works[1], "tab")
    with pytest.raises(JobLimitError, match="at most 2 per session"):
        queue.submit(("job", 2), "job 2", works[2], "tab")
    queue.submit(("job", 0), "job 0", Fake(), "tab")  # joining a job it already waits for is fine
    queue.submit(("job", 2), "job 2", works[2], "other tab")  # another session is not limited by this one
    queue.leave_all("tab")
    queue.leave_all("other tab")


def test_cancel_stops_a_running_thread_job_at_its_next_progress_point():
    queue, work = JobQueue(), Fake()
    job = queue.submit("k", "long", work, "tab")
    until(lambda: work.steps > 0)
    queue.leave(job, "tab")  # the Cancel button: this session stops waiting, and nobody else waits
    assert job.wait(5) and job.state == CANCELLED and job.result is None
    steps = work.steps
    time.sleep(0.1)
    assert work.steps == steps  # it really stopped


def test_cancel_by_one_of_two_sessions_leaves_the_job_running_for_the_other():
    queue, work = JobQueue(), Fake()
    job = queue.submit("k", "long", work, "tab-a")
    queue.submit("k", "long", work, "tab-b")
    until(lambda: work.steps > 0)
    queue.leave(job, "tab-a")
    time.sleep(0.1)
    assert job.state == RUNNING
    work.release.set()
    assert job.wait(5) and job.state == DONE


def test_a_job_nobody_waits_for_stops_and_a_queued_one_never_starts():
    queue = JobQueue(max_heavy=1)
    first, second = Fake(), Fake()
    running = queue.submit("a", "a", first, "tab-1")
    queued = queue.submit("b", "b", second, "tab-1")
    until(lambda: first.steps > 0)
    assert queue.leave_all("tab-1") == 2  # the tab was closed: the session reaper calls this
    assert running.wait(5) and queued.wait(5)
    assert running.state == queued.state == CANCELLED and second.runs == 0
    assert queue.running() == [] and queue.queued() == []


def test_cancel_kills_a_job_subprocess():
    queue = JobQueue()
    started = threading.Event()
    processes = []

    def work(job):
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        processes.append(process)
        job.attach_process(process)
        started.set()
        process.wait()
        job.check()
        return "finished"

    job = queue.submit("sub", "subprocess", work, "tab")
    assert started.wait(10)
    queue.cancel(job)
    assert job.wait(10) and job.state == CANCELLED
    assert processes[0].poll() is not None  # killed, not left sleeping


def test_a_failing_job_says_why_and_is_started_again_on_the_next_request():
    queue = JobQueue()

    def broken(job):
        raise ValueError("no such layer")

    job = queue.submit("k", "broken", broken, "tab")
    assert job.wait(5) and job.state == FAILED and job.error == "no such layer"
    again = queue.submit("k", "fixed", lambda job: 42, "tab")
    assert again is not job and again.wait(5) and again.result == 42


def test_an_inline_slot_waits_its_turn_behind_a_background_job_and_can_give_up():
    queue, work = JobQueue(max_heavy=1), Fake()
    background = queue.submit("bg", "sweep", work, "tab-a")
    until(lambda: work.steps > 0)
    positions = []

    def on_wait(position: int) -> None:
        positions.append(position)
        if len(positions) > 3:
            raise RuntimeError("script stopped")  # what Streamlit raises in a stopped script

    with pytest.raises(RuntimeError, match="script stopped"):
        with queue.slot("analysis", "analysis", "tab-b", on_wait):
            pytest.fail("must not run while the limit is taken")
    assert set(positions) == {1} and queue.queued() == []  # its place was given up
    ran = []

    def later() -> None:
        with queue.slot("analysis", "analysis", "tab-b") as job:
            job.report(0.5, "half")
            ran.append(job.state)

    thread = threading.Thread(target=later)
    thread.start()
    time.sleep(0.2)
    assert ran == []
    work.release.set()
    thread.join(5)
    assert ran == [RUNNING] and background.state == DONE


def test_a_cancelled_inline_slot_raises_at_its_progress_point():
    queue = JobQueue()
    with pytest.raises(JobCancelled):
        with queue.slot("analysis", "analysis", "tab") as job:
            queue.leave_all("tab")
            job.report(0.1, "token 1")
    assert queue.running() == []
