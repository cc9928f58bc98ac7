"""Sweep throughput with 1 vs 2 Ray workers, and the sequence path vs token by token, as ratios.

    python -m benchmarks.sweep            # both measurements
    python -m benchmarks.sweep --quick    # sample model only (no 370M model)

Targets (issue 13): 2 Ray workers evaluate sweep points at least 1.6x as fast as 1; teacher-forcing
a text at once (the sequence path every sweep point uses) is at least 5x faster than feeding it
token by token on the 370M configuration.

The worker ratio is measured in alternating 1-worker / 2-worker runs (`--repeats`), each timing
`--points` sensitivity points after Ray, the workers' Evaluators and one point per worker are
warm. Each run also says, from the rows' per-point timestamps and CPU seconds, how much of the time
all workers were inside a point, how many cores the workers got, and how much CPU the driver and
the other processes on the machine took meanwhile; after each pair, a yardstick with no Ray in it
(two copies of a plain Python loop against one) says what a second process could gain at that
moment. On a machine other jobs share, read the ratio against that yardstick. On Linux with
autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`), the kernel shares the CPU
between sessions first: the driver, Ray's daemons and every worker are one session, so while other
sessions are busy they get one session's share together, however many workers there are; the
yardstick runs in the same session for that reason.

The 370M measurement uses the published MMfreeLM-370M configuration, all 24 layers (hidden 1024,
vocab 32000), with random weights built directly in inference form
(`inspector.lm.synthetic.random_frozen_model`, as `benchmarks.scale` does); the whole benchmark
peaked at 1.4-1.8 GB resident here. The host's LM head runs one position at a
time on both paths (so a token's logits never depend on how many tokens were fed together); its
time is reported apart, so the chip side's ratio can be read without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.scale import random_published
from inspector.backends.emulator import Emulator
from inspector.lm.catalog import sample_models, validation_text
from inspector.lm.checkpoint import LoadedModel, load_checkpoint
from inspector.lm.memory import peak_resident_bytes
from inspector.quant.config import QuantConfig
from inspector.sweep.evaluate import SweepSpec, held_out_ids
from inspector.sweep.runner import SweepRunner
from inspector.sweep.study import sensitivity_points

TARGET_TWO_WORKERS = 1.6
TARGET_SEQUENCE_370M = 5.0


@dataclass
class SweepRun:
    """One timed batch of sweep points and what the per-point timestamps say about it."""

    workers: int
    points: int
    seconds: float  # wall time of the timed batch
    start_s: float  # Ray, the workers and their Evaluators started (not timed)
    worker_cpu_s: float  # CPU seconds the points took, summed over the workers
    machine_busy_s: float  # CPU seconds every process on the machine used meanwhile (/proc/stat)
    driver_cpu_s: float  # CPU seconds of this process (the driver: dispatch, Parquet rewrites) meanwhile
    overlap: float  # share of the wall time during which every worker was inside a point
    pids: int  # distinct worker processes that evaluated the points

    @property
    def per_minute(self) -> float:
        return 60 * self.points / self.seconds

    @property
    def others_cores(self) -> float:
        """Cores' worth of CPU other processes (Ray's daemons included) took meanwhile."""
        return max(self.machine_busy_s - self.worker_cpu_s - self.driver_cpu_s, 0.0) / self.seconds

    def describe(self) -> str:
        return (
            f"{self.workers} worker(s): {self.points} points in {self.seconds:.2f} s = {self.per_minute:.0f} points/min; "
            f"CPU per point {1e3 * self.worker_cpu_s / self.points:.0f} ms; "
            f"workers busy {self.worker_cpu_s / self.seconds:.2f} cores, "
            f"all {self.workers} inside a point {100 * self.overlap:.0f}% of the time; "
            f"driver {self.driver_cpu_s / self.seconds:.2f} cores, "
            f"other processes {self.others_cores:.2f} cores (start-up {self.start_s:.1f} s, not timed)"
        )


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def all_busy_share(rows: list[dict], workers: int, start: float, end: float) -> float:
    """Share of [start, end] during which `workers` points were running at once (from the rows'
    per-point wall-clock timestamps)."""
    events = sorted([(r["started_at"], 1) for r in rows] + [(r["finished_at"], -1) for r in rows])
    inside, last, covered = 0, start, 0.0
    for at, step in events:
        if inside >= workers:
            covered += at - last
        inside, last = inside + step, at
    return covered / max(end - start, 1e-9)


YARDSTICK = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(12_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def two_process_yardstick() -> float:
    """What two plain processes gain over one on this machine right now: a pure-Python loop run
    alone, then two copies at once; 2 x (alone) / (together). Any two workers, Ray or not, get
    at most this, so the sweep's ratio is read against it."""

    def run(copies: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", YARDSTICK], stdout=subprocess.DEVNULL) for _ in range(copies)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    return 2 * run(1) / run(2)


def bench_points(spec: SweepSpec) -> list:
    """Points as a sweep makes them: each knob lowered and raised, then per-layer lowerings."""
    return [p for p in sensitivity_points(spec.base, spec.loaded.config.num_hidden_layers) if p.kind != "base"]


def sweep_run(loaded: LoadedModel, workers: int, points: int, tokens: int) -> SweepRun:
    ids, chars = held_out_ids(loaded, validation_text(loaded), tokens)
    spec = SweepSpec(loaded, ids, chars, QuantConfig())
    plan = bench_points(spec)
    if len(plan) < points + workers:
        raise SystemExit(f"the model has only {len(plan)} sweep points; ask for at most {len(plan) - workers}")
    with tempfile.TemporaryDirectory() as out, SweepRunner(spec, out, workers=workers) as runner:
        # Outside the timing, as in a long sweep: Ray started, every worker's Evaluator built
        # (float logits, calibration), then one point per worker (its first conversion).
        began = time.perf_counter()
        runner.start()
        runner.run(plan[:workers])
        start_s = time.perf_counter() - began
        busy0, cpu0, wall0, start = machine_busy_seconds(), time.process_time(), time.time(), time.perf_counter()
        rows = runner.run(plan[workers:workers + points])
        seconds = time.perf_counter() - start
        wall1, cpu1, busy1 = time.time(), time.process_time(), machine_busy_seconds()
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        raise RuntimeError(f"benchmark points failed: {failed[0].get('error')}")
    return SweepRun(
        workers, len(rows), seconds, start_s, sum(r["cpu_seconds"] for r in rows), busy1 - busy0, cpu1 - cpu0,
        all_busy_share(rows, workers, wall0, wall1), len({r["pid"] for r in rows}),
    )


def sequence_vs_token(loaded: LoadedModel, ids: list[int]) -> tuple[float, float, float]:
    """Seconds to teacher-force `ids` at once and token by token (integer model, probes off), and
    the seconds of the host's LM head alone, which both paths run one position at a time."""
    text = "The quick brown fox jumps over the lazy dog. " * 40
    emulator = Emulator(loaded, QuantConfig(calibration_tokens=256), calibration_text=text)
    integer = emulator.integer
    with torch.no_grad():
        start = time.perf_counter()
        at_once, _ = integer(torch.tensor([ids]))
        sequence_s = time.perf_counter() - start
        start = time.perf_counter()
        state, rows = None, []
        for token in ids:
            logits, state = integer(torch.tensor([[token]]), state)
            rows.append(logits)
        token_s = time.perf_counter() - start
        codes = torch.randint(-100, 100, (1, len(ids), loaded.config.hidden_size))
        start = time.perf_counter()
        integer.host_logits(codes)
        head_s = time.perf_counter() - start
    assert torch.equal(at_once, torch.cat(rows, dim=1)), "the two paths must give the same logits"
    return sequence_s, token_s, head_s


def report(name: str, n: int, seq_s: float, tok_s: float, head_s: float, target: float | None = None) -> None:
    chip = (tok_s - head_s) / max(seq_s - head_s, 1e-9)
    verdict = "" if target is None else f" ({'meets' if tok_s / seq_s >= target else 'MISSES'} the target >= {target})"
    print(
        f"{name}: {n} tokens at once {seq_s:.2f} s, token by token {tok_s:.2f} s: {tok_s / seq_s:.1f}x{verdict}; "
        f"without the host LM head ({head_s:.2f} s on both paths): {chip:.1f}x"
    )


def peak_rss_gb() -> float:
    return peak_resident_bytes() / 2**30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep")
    parser.add_argument("--quick", action="store_true", help="skip the 370M model")
    parser.add_argument("--model", default="shakespeare")
    parser.add_argument("--points", type=int, default=32, help="timed sweep points per run")
    parser.add_argument("--repeats", type=int, default=3, help="1-worker/2-worker run pairs")
    parser.add_argument("--tokens", type=int, default=256, help="held-out tokens per sweep point")
    parser.add_argument("--seq-tokens", type=int, default=128, help="tokens for sequence vs token by token")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loaded = load_checkpoint(sample_models()[args.model])
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine skews both runs)")
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if autogroup.is_file() and autogroup.read_text().strip() == "1":
        print("Linux autogroup scheduling is on: this session (driver and Ray workers) gets one session's share "
              "of the CPU while other sessions are busy")
    ratios, yardsticks = [], []
    for _ in range(args.repeats):  # alternating, so a change in the machine's load hits both
        one = sweep_run(loaded, 1, args.points, args.tokens)
        two = sweep_run(loaded, 2, args.points, args.tokens)
        ratios.append(two.per_minute / one.per_minute)
        yardsticks.append(two_process_yardstick())
        print(f"  {one.describe()}\n  {two.describe()}\n  ratio {ratios[-1]:.2f}x; "
              f"two plain processes right after: {yardsticks[-1]:.2f}x")
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio >= TARGET_TWO_WORKERS else "MISSES"
    print(
        f"{args.model}: 2 Ray workers vs 1, median of {len(ratios)}: {ratio:.2f}x "
        f"({verdict} the target >= {TARGET_TWO_WORKERS}); "
        f"two plain processes, the most any two workers could gain meanwhile: median {statistics.median(yardsticks):.2f}x"
    )

    ids = held_out_ids(loaded, validation_text(loaded), args.seq_tokens)[0]
    report(args.model, len(ids), *sequence_vs_token(loaded, ids))
    if not args.quick:
        wide = random_published("MMfreeLM-370M")
        ids = [int(i) for i in torch.randint(3, 300, (args.seq_tokens,), generator=torch.Generator().manual_seed(1))]
        name = f"MMfreeLM-370M, all {wide.config.num_hidden_layers} layers (random weights)"
        report(name, len(ids), *sequence_vs_token(wide, ids), target=TARGET_SEQUENCE_370M)
        print(f"peak RSS {peak_rss_gb():.1f} GB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
