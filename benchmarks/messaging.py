"""Event-driven messaging, measured: messages, energy and bits/char under dense and sigma-delta.

    python -m benchmarks.messaging                       # both sample models and 370M (random weights)
    python -m benchmarks.messaging --models shakespeare --tokens 256
    python -m benchmarks.messaging --search inputs       # search only the BitLinear inputs' thresholds
    python -m benchmarks.messaging speed                 # emulator speed, delta vs dense, on 370M

Per model, teacher-forced on held-out text (the sample models' validation split; for 370M with
random weights, the same sentence repeated: random weights say nothing about real sparsity):
- messages per token with every group `dense`, and with every group `delta` at vth = 0 (the same
  bits: only the messages that carry a change);
- the per-group thresholds that keep bits/char within +0.5% of the dense integer model, found by
  the sweep engine's greedy search (Ray workers) over the groups' `vth_*` knobs, with their message
  and energy savings against dense. Energy is the hardware estimate's (inspector.chip.estimate).
  `--search inputs` searches only the thresholds of the groups that feed a BitLinear (the others
  stay `delta` at vth = 0, which changes no bit).

`speed`: the integer emulator one token at a time (generation's path, probes off) on 370M, with
every group (`--search inputs`: the BitLinear inputs) `delta` at vth = 4 against `dense`; target:
at most 1.3x slower. Also a 128-token prompt fed in one call (prefill), for information.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from inspector.quant.config import QuantConfig
from inspector.quant.messaging import GROUPS, VTH_FIELDS

# The thresholds each --search choice walks: every group's, or only those of the BitLinear inputs.
SEARCHED = {"all": set(VTH_FIELDS), "inputs": {f"vth_{key}" for key, g in GROUPS.items() if g.projections}}

SPEED_TARGET = 1.3
RANDOM_TEXT = "The quick brown fox jumps over the lazy dog and runs far away from the hunter. " * 20


def all_groups(mode: str, vth: int = 0, base: QuantConfig | None = None, groups=GROUPS) -> QuantConfig:
    base = base or QuantConfig()
    return base.with_overrides({f"messaging_{g}": mode for g in groups} | {f"vth_{g}": vth for g in groups})


def _load(name: str):
    from benchmarks.scale import random_published
    from inspector.lm.catalog import sample_models, validation_text
    from inspector.lm.checkpoint import load_checkpoint

    if name == "370m":
        return random_published("MMfreeLM-370M"), RANDOM_TEXT, QuantConfig(calibration_tokens=256)
    loaded = load_checkpoint(sample_models()[name])
    return loaded, validation_text(loaded), QuantConfig()


def measure(name: str, tokens: int, workers: int, max_rounds: int, searched: str = "all") -> dict:
    from inspector.sweep.evaluate import SweepSpec, held_out_ids
    from inspector.sweep.runner import SweepRunner
    from inspector.sweep.study import bit_width_search, point

    loaded, text, base = _load(name)
    ids, chars = held_out_ids(loaded, text, tokens)
    spec = SweepSpec(loaded, ids, chars, base, calibration_text=RANDOM_TEXT if name == "370m" else None)
    out = Path(tempfile.mkdtemp(prefix=f"messaging-{name}-"))
    started = time.perf_counter()
    with SweepRunner(spec, out, workers=workers) as runner:
        dense, delta0 = runner.run([point("base", "", base), point("base", "", all_groups("delta", 0, base))])
        for row in (dense, delta0):
            if row.get("status") != "ok":
                raise RuntimeError(f"{name}: {row.get('error')}")
        # +0.5% of the dense integer model's bits/char, expressed against the float model's (the search's budget)
        budget = 100 * ((1 + dense["delta_bpc_pct"] / 100) * 1.005 - 1)
        search = bit_width_search(runner, all_groups("delta", 0, base), budget, max_rounds=max_rounds, only=SEARCHED[searched])
    winner_row = search.steps[-1] if search.steps else delta0
    saving = lambda key: 100 * (1 - winner_row[key] / dense[key])  # noqa: E731
    return {
        "model": name if name != "370m" else "MMfreeLM-370M (random weights)",
        "searched": searched,
        "tokens": len(ids),
        "bpc_dense": dense["bits_per_char"],
        "bpc_delta0": delta0["bits_per_char"],
        "messages_dense": dense["messages_per_token"],
        "messages_delta0": delta0["messages_per_token"],
        "energy_dense_uj": dense["energy_per_token_uj"],
        "energy_delta0_uj": delta0["energy_per_token_uj"],
        "vth": {g: getattr(search.winner, f"vth_{g}") for g in GROUPS},
        "bpc_winner": winner_row["bits_per_char"],
        "bpc_change_pct": 100 * (winner_row["bits_per_char"] / dense["bits_per_char"] - 1),
        "messages_winner": winner_row["messages_per_token"],
        "energy_winner_uj": winner_row["energy_per_token_uj"],
        "message_saving_pct": saving("messages_per_token"),
        "energy_saving_pct": saving("energy_per_token_uj"),
        "search_rounds": len(search.steps),
        "search_note": search.note,
        "seconds": time.perf_counter() - started,
    }


def speed(tokens: int, rounds: int = 4, searched: str = "all") -> dict:
    """Tokens/s of the emulator one token at a time, dense and delta (vth = 4) in the `searched`
    groups (all, or the BitLinear inputs), on 370M random weights."""
    from benchmarks.scale import random_published, tokens_per_second
    from inspector.backends.emulator import Emulator

    loaded = random_published("MMfreeLM-370M")
    ids = [int(i) for i in torch.randint(3, 300, (tokens,), generator=torch.Generator().manual_seed(1))]
    dense = Emulator(loaded, QuantConfig(calibration_tokens=256))
    groups = [field.removeprefix("vth_") for field in sorted(SEARCHED[searched])]
    delta = Emulator(loaded, all_groups("delta", 4, QuantConfig(calibration_tokens=256), groups))
    row = {"model": "MMfreeLM-370M (random weights)", "tokens": tokens, "delta_groups": searched}
    # interleaved, best of `rounds`, so a neighbour's load hits both alike
    for _ in range(rounds):
        for key, emulator in (("dense", dense), ("delta", delta)):
            row[f"{key}_tok_s"] = max(row.get(f"{key}_tok_s", 0.0), tokens_per_second(emulator.step_fn(None), ids))
    row["slowdown"] = row["dense_tok_s"] / row["delta_tok_s"]
    # a prompt fed at once (prefill): the encoders run over all its tokens in one call per site
    prompt = torch.tensor([ids * 8])
    for _ in range(rounds):
        for key, emulator in (("dense", dense), ("delta", delta)):
            with torch.no_grad():
                started = time.perf_counter()
                emulator.step_fn(None)(prompt, None)
                rate = prompt.shape[1] / (time.perf_counter() - started)
            row[f"{key}_prefill_tok_s"] = max(row.get(f"{key}_prefill_tok_s", 0.0), rate)
    row["prefill_slowdown"] = row["dense_prefill_tok_s"] / row["delta_prefill_tok_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="measure", choices=["measure", "speed"])
    parser.add_argument("--models", nargs="*", default=["shakespeare", "tinystories", "370m"])
    parser.add_argument("--tokens", type=int, default=256, help="held-out tokens (370M: a quarter of these)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-rounds", type=int, default=100)
    parser.add_argument("--search", choices=sorted(SEARCHED), default="all", help="which groups' thresholds to search")
    args = parser.parse_args(argv)
    if args.what == "speed":
        row = speed(16, searched=args.search)
        verdict = "meets" if row["slowdown"] <= SPEED_TARGET else "MISSES"
        print(json.dumps(row))
        label = f"370M emulator, delta (vth=4, {args.search} groups) vs dense"
        print(f"{label}: {row['slowdown']:.2f}x slower ({verdict} <= {SPEED_TARGET}x)")
        print(f"  a {row['tokens'] * 8}-token prompt fed at once: {row['prefill_slowdown']:.2f}x slower")
        return 0
    for name in args.models:
        tokens = args.tokens // 4 if name == "370m" else args.tokens
        row = measure(name, tokens, args.workers, args.max_rounds if name != "370m" else min(args.max_rounds, 8), args.search)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
