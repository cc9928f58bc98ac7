"""Sweeps started from the app: a process-wide registry of background jobs, and where results go.

The registry is a module-level dict, not session state: a sweep keeps running (and stays visible)
when the user switches pages or reloads, and a second sweep into the same directory is refused
while the first runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from inspector.checkpoint import LoadedModel
from inspector.paths import data_root
from inspector.quant.config import QuantConfig
from inspector.sweep.background import SweepJob
from inspector.sweep.runner import RESULTS_FILE

JOBS: dict[str, SweepJob] = {}


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


def running_job(out_dir: Path) -> SweepJob | None:
    job = JOBS.get(str(Path(out_dir).resolve()))
    return job if job is not None and job.running else None


def register(job: SweepJob) -> SweepJob:
    JOBS[str(job.out_dir.resolve())] = job
    return job


def job_for(out_dir: Path) -> SweepJob | None:
    return JOBS.get(str(Path(out_dir).resolve()))


def other_running(out_dir: Path) -> SweepJob | None:
    """A sweep running into another directory: one at a time, since they would share (and the first
    to finish would shut down) the one local Ray instance."""
    mine = str(Path(out_dir).resolve())
    return next((job for key, job in JOBS.items() if key != mine and job.running), None)
