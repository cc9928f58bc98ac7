"""The sweep engine: sweep points as independent Ray tasks, results streamed into one Parquet file.

- Ray: an embedded local instance on this machine's cores by default (`ray.init(num_cpus=...)`,
  nothing to start by hand, shut down when the sweep ends), or an existing cluster given by
  `address` / the RAY_ADDRESS environment variable. On a cluster the `inspector` package is shipped
  to the workers (`py_modules`); torch, polars and the other requirements must be installed there.
- Each worker is a Ray actor holding one `Evaluator` (float logits, calibration, cached conversions),
  built when the worker starts, all workers at once, from the model, tokenizer and held-out tokens
  put in Ray's object store once. An actor rather than a task with a per-process cache: a task can
  land on any worker process, so nothing guaranteed that every worker had built its Evaluator
  before the points that count (a worker's first point costs several points' time), and a stateful
  worker is what an actor is. `SweepRunner.start()` waits until every worker is ready.
- The driver keeps two points at each worker (the one it runs, the next one waiting), so the
  workers stay equally busy and never wait for the driver to write a result; stopping ends the
  workers that hold points. A worker that dies is replaced: the point it was running is recorded
  as failed, the one waiting behind it goes back to the queue.
- Every finished point (a failure included, with its error) is written at once: `points.parquet`
  in the output directory is rewritten atomically after each result, so a stopped or crashed sweep
  keeps everything finished so far, and a re-run skips points already there (failed ones are retried).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

import polars as pl

from inspector.sweep.evaluate import Evaluator, Point, SweepError, SweepSpec

RESULTS_FILE = "points.parquet"
META_FILE = "sweep.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
AHEAD = 2  # points handed to a worker at once: the next one waits there, so no worker idles while the driver writes
SINGLE_THREADED = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# on_result(row, finished, total): called in the driver as each point finishes
ResultFn = Callable[[dict[str, Any], int, int], None]



def _error_row(point: Point, error: str) -> dict[str, Any]:
    return {
        "point_id": point.point_id, "kind": point.kind, "knob": point.knob, "setting": point.setting,
        "layer": point.layer, "label": point.label, "quant_config": point.quant_config,
        "status": "error", "error": error,
    }


class SweepWorker:
    """A Ray actor (one CPU) that evaluates points with its own Evaluator, built on start."""

    def __init__(self, spec: SweepSpec):
        import torch

        torch.set_num_threads(1)  # one point per CPU: the parallelism is across workers
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # a reused process that already ran torch work keeps its pool
            pass
        try:
            self.evaluator: Optional[Evaluator] = Evaluator(spec)
            self.evaluator.calibration(spec.base.calibration_tokens)  # what nearly every point converts with
            self.error = ""
        except Exception as exc:  # e.g. a text too short: every point says why
            self.evaluator, self.error = None, f"{type(exc).__name__}: {exc}"

    def ready(self) -> int:
        return os.getpid()

    def evaluate(self, point: Point) -> dict[str, Any]:
        if self.evaluator is None:
            return _error_row(point, self.error) | {"pid": os.getpid()}
        return self.evaluator.evaluate(point)


class ResultStore:
    """The sweep's Parquet file: one row per point id, rewritten atomically on every result."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / RESULTS_FILE
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for row in pl.read_parquet(self.path).to_dicts():
                self.rows[row["point_id"]] = row

    def done(self, point_id: str) -> bool:
        row = self.rows.get(point_id)
        return row is not None and row.get("status") == "ok"

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["point_id"]] = row
        tmp = self.path.with_suffix(".parquet.tmp")
        self.frame().write_parquet(tmp)
        os.replace(tmp, self.path)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(list(self.rows.values()), infer_schema_length=None)


def load_results(out_dir: str | Path) -> pl.DataFrame:
    """The points of a sweep directory (empty frame when none finished yet)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise SweepError(f"{out_dir} holds no sweep results ({RESULTS_FILE} is missing)")
    return pl.read_parquet(path)


def spec_fingerprint(spec: SweepSpec) -> dict[str, Any]:
    return {
        "model": str(spec.loaded.directory),
        "tokens": len(spec.ids),
        "ids_sha1": hashlib.sha1(json.dumps(spec.ids).encode()).hexdigest(),
        "characters": spec.num_chars,
        "base_quant_config": spec.base.to_dict(),
    }


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a cluster address nothing listens on (Ray itself retries for minutes)."""
    target = address.split("://", 1)[-1]
    if target == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot reach the Ray cluster at {address}: {exc}") from None


AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"


def token_auth_help(address: str) -> str:
    """What to set to reach a cluster with token authentication (Ray 2.60's `ray start --head`
    enables it whenever a token exists, and a driver given an explicit address does not)."""
    mode = os.environ.get(AUTH_MODE_VARIABLE)
    told = f"{AUTH_MODE_VARIABLE} is {mode!r}" if mode else f"{AUTH_MODE_VARIABLE} is not set"
    return (
        f"the Ray cluster at {address} requires token authentication and {told} for this process. Set "
        f"{AUTH_MODE_VARIABLE}=token here, with the cluster's token in RAY_AUTH_TOKEN, or in the file named by "
        "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (where `ray start --head` reads it; `ray get-auth-token` "
        "on the head node prints it)"
    )


def _check_authentication(address: str) -> None:
    """Fail fast, saying what to set, on a cluster that wants a token this driver will not send.

    Without this, `ray.init(address=...)` retries for about 20 s and then only says it failed to
    connect. Asking the cluster's GCS directly is answered at once with an authentication error."""
    target = address.split("://", 1)[-1]
    if target == "auto" or ":" not in target:
        return
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray version: ray.init's own error is all we have
        return
    try:
        GcsClient(address=target)
    except AuthenticationError:
        if os.environ.get(AUTH_MODE_VARIABLE, "").lower() == "token":
            raise SweepError(
                f"the Ray cluster at {address} refused this process's authentication token: give it the cluster's "
                "token in RAY_AUTH_TOKEN, the file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token "
                "(`ray get-auth-token` on the head node prints it)"
            ) from None
        raise SweepError(token_auth_help(address)) from None
    except Exception:  # anything else: leave it to ray.init, which says more
        return


class SweepRunner:
    """Runs batches of points on Ray for one spec and one output directory (use as a context manager)."""

    def __init__(self, spec: SweepSpec, out_dir: str | Path, address: Optional[str] = None, workers: Optional[int] = None):
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers
        self._started_ray = False
        self._spec_ref = None
        self._actor_class = None
        self._pool: list = []  # the SweepWorker actors
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._check_meta()
        self.store = ResultStore(self.out_dir)

    def _check_meta(self) -> None:
        meta_path = self.out_dir / META_FILE
        mine = spec_fingerprint(self.spec)
        if meta_path.is_file():
            theirs = json.loads(meta_path.read_text(encoding="utf-8"))
            if {k: theirs.get(k) for k in mine} != mine:
                raise SweepError(
                    f"{self.out_dir} holds a sweep of another model, text or base QuantConfig; "
                    "choose another output directory to start a new sweep"
                )
        else:
            meta_path.write_text(json.dumps(mine, indent=2) + "\n", encoding="utf-8")

    def write_meta(self, **extra: Any) -> None:
        meta_path = self.out_dir / META_FILE
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta.update(extra)
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # -- Ray -----------------------------------------------------------------------------------
    def _ray(self):
        import ray

        if not ray.is_initialized():
            if self.address:
                _check_reachable(self.address)
                _check_authentication(self.address)
            try:
                if self.address:
                    ray.init(
                        address=self.address,
                        runtime_env={"py_modules": [str(REPO_ROOT / "inspector")], "env_vars": SINGLE_THREADED},
                        log_to_driver=False,
                    )
                else:
                    workers = self.workers or os.cpu_count() or 1
                    ray.init(
                        num_cpus=workers,
                        include_dashboard=False,
                        log_to_driver=False,
                        object_store_memory=max(256 * 2**20, 4 * self.spec.loaded.model.num_parameters() * 4),
                        # one point per CPU: keep each worker's polars and BLAS pools to one thread
                        runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), **SINGLE_THREADED}},
                    )
            except Exception as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise SweepError(f"cannot start or reach {where}: {exc}") from None
            self._started_ray = True
        if self._spec_ref is None:
            self._spec_ref = ray.put(self.spec)
            self._actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(SweepWorker)
        return ray

    def pool_size(self) -> int:
        """Workers to start: `workers` if given, else one per CPU of the Ray instance."""
        import ray

        return self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _new_worker(self):
        return self._actor_class.remote(self._spec_ref)

    def start(self) -> list[int]:
        """Start Ray and the workers and wait until every worker has built its Evaluator (the
        float logits and calibration every point reuses). `run` starts them anyway; calling this
        first keeps that start-up out of whatever is timed next. Returns the workers' process ids."""
        ray = self._ray()
        while len(self._pool) < self.pool_size():
            self._pool.append(self._new_worker())
        try:
            return ray.get([worker.ready.remote() for worker in self._pool])
        except Exception as exc:
            raise SweepError(f"the sweep workers did not start: {type(exc).__name__}: {exc}") from None

    def _end_workers(self, workers: list) -> None:
        import ray

        for worker in workers:
            if ray.is_initialized():
                ray.kill(worker, no_restart=True)
            if worker in self._pool:
                self._pool.remove(worker)

    def close(self) -> None:
        """End the workers, and shut down the Ray instance if this runner started it (no worker
        processes linger; on an existing cluster the workers' CPUs are given back)."""
        if self._pool:
            self._end_workers(list(self._pool))
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
        self._spec_ref = None
        self._actor_class = None

    def __enter__(self) -> "SweepRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running -------------------------------------------------------------------------------
    def run(
        self, points: list[Point], on_result: Optional[ResultFn] = None, stop: Optional[threading.Event] = None
    ) -> list[dict[str, Any]]:
        """Evaluate `points` (skipping those already in the results); rows in the order of `points`.

        Points still running when `stop` is set are cancelled and left out of the returned rows.
        """
        unique = list({p.point_id: p for p in points}.values())
        todo = [p for p in unique if not self.store.done(p.point_id)]
        finished = len(unique) - len(todo)
        if on_result is not None:
            for p in unique:
                if self.store.done(p.point_id):
                    on_result(self.store.rows[p.point_id], finished, len(unique))
        if todo and not (stop is not None and stop.is_set()):
            ray = self._ray()
            while len(self._pool) < self.pool_size():
                self._pool.append(self._new_worker())
            queue = list(reversed(todo))  # popped from the end: the points' order
            calls: dict[Any, deque] = {worker: deque() for worker in self._pool}  # per worker, oldest first
            running: dict[Any, tuple[Any, Point]] = {}  # call ref -> (worker, point)
            while queue or running:
                if stop is not None and stop.is_set():
                    self._end_workers([worker for worker, refs in calls.items() if refs])  # the next run starts new ones
                    break
                for worker, refs in calls.items():  # keep AHEAD points waiting at each worker
                    while queue and len(refs) < AHEAD:
                        point = queue.pop()
                        ref = worker.evaluate.remote(point)
                        refs.append(ref)
                        running[ref] = (worker, point)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
                for ref in ready:
                    if ref not in running:  # a call of a worker whose death was already handled
                        continue
                    worker, point = running.pop(ref)
                    try:
                        row = ray.get(ref)
                        calls[worker].remove(ref)
                    except Exception as exc:  # the worker died or Ray failed: still a recorded result
                        # the worker's oldest call is the point it was running; the ones queued
                        # behind it go back to the queue for the other workers
                        pending = list(calls.pop(worker))
                        point_of = {r: running.pop(r)[1] for r in pending if r in running} | {ref: point}
                        failed = point_of[pending[0]]
                        queue.extend(point_of[r] for r in reversed(pending[1:]))
                        row = _error_row(failed, f"Ray task failed: {type(exc).__name__}: {exc}")
                        self._end_workers([worker])
                        replacement = self._new_worker()
                        self._pool.append(replacement)
                        calls[replacement] = deque()
                    self.store.add(row)
                    finished += 1
                    if on_result is not None:
                        on_result(row, finished, len(unique))
        return [self.store.rows[p.point_id] for p in points if p.point_id in self.store.rows]
