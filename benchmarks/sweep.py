"""Sweep throughput with 1 vs 2 Ray workers, and the sequence path vs token by token, as ratios.

    python -m benchmarks.sweep            # both measurements
    python -m benchmarks.sweep --quick    # sample model only (no 370M-width model)

Targets (issue 13): 2 Ray workers evaluate sweep points at least 1.6x as fast as 1; teacher-forcing
a text at once (the sequence path every sweep point uses) is at least 5x faster than feeding it
token by token on the 370M configuration.

The 370M measurement uses the published MMfreeLM-370M configuration, all 24 layers (hidden 1024,
vocab 32000), with random weights built directly in inference form
(`inspector.synthetic.random_frozen_model`, as `benchmarks.scale` does): about 1.9 GB for the
float model, the integer model's weight copies on top. The host's LM head runs one position at a
time on both paths (so a token's logits never depend on how many tokens were fed together); its
time is reported apart, so the chip side's ratio can be read without it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from benchmarks.scale import random_published
from inspector.catalog import sample_models, validation_text
from inspector.checkpoint import LoadedModel, load_checkpoint
from inspector.emulator.engine import Emulator
from inspector.quant.config import QuantConfig
from inspector.sweep.evaluate import SweepSpec, held_out_ids
from inspector.sweep.knobs import knobs
from inspector.sweep.runner import SweepRunner
from inspector.sweep.study import point

TARGET_TWO_WORKERS = 1.6
TARGET_SEQUENCE_370M = 5.0


def sweep_points_per_minute(loaded: LoadedModel, workers: int, points: int, tokens: int) -> float:
    ids, chars = held_out_ids(loaded, validation_text(loaded), tokens)
    spec = SweepSpec(loaded, ids, chars, QuantConfig())
    found, _ = knobs(spec.base)
    plan = []
    for knob in found:
        for value in (knob.lower, knob.precise):
            if value != getattr(spec.base, knob.name) and len(plan) < points + 2:
                plan.append(point("bench", knob.name, spec.base, value))
    with tempfile.TemporaryDirectory() as out, SweepRunner(spec, out, workers=workers) as runner:
        # Warm-up outside the timing, as in a long sweep: Ray started, every worker process spawned
        # with torch imported and the model, float logits and calibration cached.
        runner.run(plan[:2])
        start = time.perf_counter()
        rows = runner.run(plan[2:])
        seconds = time.perf_counter() - start
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        raise RuntimeError(f"benchmark points failed: {failed[0].get('error')}")
    return 60 * len(rows) / seconds


def sequence_vs_token(loaded: LoadedModel, ids: list[int]) -> tuple[float, float, float]:
    """Seconds to teacher-force `ids` at once and token by token (integer model, probes off), and
    the seconds of the host's LM head alone, which both paths run one position at a time."""
    emulator = Emulator(loaded, QuantConfig(calibration_tokens=256), calibration_text="The quick brown fox jumps over the lazy dog. " * 40)
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
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep")
    parser.add_argument("--quick", action="store_true", help="skip the 370M model")
    parser.add_argument("--model", default="shakespeare")
    parser.add_argument("--points", type=int, default=16, help="sweep points per worker count")
    parser.add_argument("--tokens", type=int, default=256, help="held-out tokens per sweep point")
    parser.add_argument("--seq-tokens", type=int, default=128, help="tokens for sequence vs token by token")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loaded = load_checkpoint(sample_models()[args.model])
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine skews both runs)")
    one = sweep_points_per_minute(loaded, 1, args.points, args.tokens)
    two = sweep_points_per_minute(loaded, 2, args.points, args.tokens)
    verdict = "meets" if two / one >= TARGET_TWO_WORKERS else "MISSES"
    print(f"{args.model}: {one:.1f} points/min with 1 Ray worker, {two:.1f} with 2: {two / one:.2f}x ({verdict} the target >= {TARGET_TWO_WORKERS})")

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
