"""Sweeps started from the app: jobs of the server's job queue (`inspector.serve.jobs`), and where results go.

A sweep is a heavy job (it keeps every CPU busy through Ray), keyed by its output directory: it
waits in line behind other long jobs, keeps running (and stays visible) when the user switches pages
or reloads, a second sweep into the same directory joins the first, and a sweep that no tab
follows any more stops (its finished points stay in the Parquet file; starting again resumes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from inspector.errors import InspectorError
from inspector.lm.checkpoint import LoadedModel
from inspector.lm.paths import data_root
from inspector.quant.config import QuantConfig
from inspector.serve.jobs import QUEUE, Job
from inspector.sweep.background import SweepJob
from inspector.sweep.evaluate import SweepSpec
from inspector.sweep.runner import RESULTS_FILE
from inspector.ui.jobs import waiter


def default_sweep_dir(loaded: LoadedModel, qc: QuantConfig, tokens: int) -> Path:
    """<data root>/sweeps/<model>-<hash of base config and tokens>: the same settings resume the same sweep."""
    digest = hashlib.sha1(json.dumps([qc.to_dict(), tokens, str(loaded.directory)], sort_keys=True).encode()).hexdigest()[:8]
    return sweeps_root() / f"{loaded.name}-{tokens}tok-{digest}"


def sweeps_root() -> Path:
    """Where the app's sweeps go: `sweeps/` under the data root (INSPECTOR_DATA_ROOT, default artifacts/)."""
    return data_root() / "sweeps"


def existing_sweeps(root: Path | None = None) -> list[Path]:
    root = sweeps_root() if root is None else root
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / RESULTS_FILE).is_file()), key=lambda p: p.stat().st_mtime, reverse=True)


def sweep_key(out_dir: Path) -> tuple:
    return ("sweep", str(Path(out_dir).resolve()))


def start_sweep(spec: SweepSpec, out_dir: Path, options: dict) -> Job:
    """Queue a sweep into `out_dir` (or join the one queued or running there) for this session."""
    sweep = SweepJob(spec, Path(out_dir), options)

    def work(job: Job) -> None:
        sweep.run(job.cancel_event)  # cancelling the job stops the Ray work: the runner ends its actors
        if sweep.error:
            raise InspectorError(sweep.error)

    return QUEUE.submit(sweep_key(out_dir), f"Sweep into {Path(out_dir).name}", work, waiter(), detail=sweep)


def sweep_progress(job: Job) -> tuple[float, str]:
    """(fraction, text) of a sweep job, from its SweepJob."""
    sweep: SweepJob = job.detail
    failed = f", {sweep.failed} failed" if sweep.failed else ""
    return sweep.fraction, f"{sweep.phase}: {sweep.done}/{sweep.total} points{failed}"


def job_for(out_dir: Path) -> Job | None:
    """The queued, running or recently finished sweep job into `out_dir`."""
    return QUEUE.job(sweep_key(out_dir))


def running_job(out_dir: Path) -> Job | None:
    job = job_for(out_dir)
    return job if job is not None and not job.finished else None


def follow(out_dir: Path) -> Job | None:
    """This session now follows the unfinished sweep into `out_dir` (so it keeps running while the tab is open)."""
    return QUEUE.join(sweep_key(out_dir), waiter())


def other_running(out_dir: Path) -> Job | None:
    """A sweep queued or running into another directory: one at a time, since they would share (and the
    first to finish would shut down) the one local Ray instance."""
    mine = sweep_key(out_dir)
    return next(
        (job for job in (*QUEUE.running(), *QUEUE.queued()) if job.key != mine and job.key[:1] == ("sweep",)), None,
    )
