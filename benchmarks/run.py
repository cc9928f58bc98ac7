"""Throughput of the float model vs the integer emulator, measured in one run, printed as ratios.

    python -m benchmarks.run            # sample models and a random-weight MMfreeLM-370M config
    python -m benchmarks.run --quick    # sample models only

Target (issue: emulator): the integer emulator with probes off runs at least half as fast as the
float model on the 370M configuration. Only ratios are compared: absolute tokens/s depend on the
machine, ratios measured in the same process on the same tokens do much less.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from inspector.backends.emulator import Emulator
from inspector.lm.catalog import sample_models
from inspector.lm.checkpoint import LoadedModel, load_checkpoint
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.lm.synthetic import random_frozen_model
from inspector.lm.tokenizer import train_bpe_tokenizer
from inspector.quant.config import QuantConfig

TARGET_INT_OVER_FLOAT_370M = 0.5


def tokens_per_second(step: Callable, ids: list[int], repeats: int = 1) -> float:
    """Feed `ids` one token at a time (generation's per-token cost), best of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        state = None
        start = time.perf_counter()
        with torch.no_grad():
            for token in ids:
                _, state = step(torch.tensor([[token]]), state)
        best = min(best, time.perf_counter() - start)
    return len(ids) / best


def random_370m() -> LoadedModel:
    config = HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-370M"])
    model = random_frozen_model(config)  # inference form, as a loaded checkpoint is
    tokenizer = train_bpe_tokenizer("the quick brown fox jumps over the lazy dog\n" * 50, vocab_size=300)
    return LoadedModel(
        model=model, tokenizer=tokenizer, config=config, directory=__import__("pathlib").Path("MMfreeLM-370M-random"),
    )


def bench(name: str, loaded: LoadedModel, tokens: int, qc: QuantConfig) -> dict[str, float]:
    emulator = Emulator(loaded, qc, calibration_text="The quick brown fox jumps over the lazy dog. " * 40)
    draws = torch.randint(0, 10_000, (tokens,), generator=torch.Generator().manual_seed(1))
    ids = [int(i) % loaded.tokenizer.get_vocab_size() for i in draws]
    float_tps = tokens_per_second(loaded.model, ids)
    int_tps = tokens_per_second(emulator.step_fn(None), ids)
    probe = emulator.new_probe(record_tensors=True)
    probed_tps = tokens_per_second(emulator.step_fn(probe), ids)
    return {"model": name, "float_tok_s": float_tps, "int_tok_s": int_tps, "int_probed_tok_s": probed_tps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--quick", action="store_true", help="skip the 370M configuration")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args(argv)
    qc = QuantConfig(calibration_tokens=256)
    rows = [bench(name, load_checkpoint(path), args.tokens, qc) for name, path in sample_models().items()]
    if not args.quick:
        rows.append(bench("MMfreeLM-370M (random weights)", random_370m(), max(8, args.tokens // 4), qc))
    print(f"{'model':34s} {'float tok/s':>12s} {'int tok/s':>10s} {'int+probes':>11s} {'int/float':>10s} {'probed/float':>13s}")
    for r in rows:
        print(
            f"{r['model']:34s} {r['float_tok_s']:12.1f} {r['int_tok_s']:10.1f} {r['int_probed_tok_s']:11.1f} "
            f"{r['int_tok_s'] / r['float_tok_s']:10.2f} {r['int_probed_tok_s'] / r['float_tok_s']:13.2f}"
        )
    big = [r for r in rows if r["model"].startswith("MMfreeLM-370M")]
    if big:
        ratio = big[0]["int_tok_s"] / big[0]["float_tok_s"]
        verdict = "meets" if ratio >= TARGET_INT_OVER_FLOAT_370M else "MISSES"
        print(f"370M: integer/float = {ratio:.2f} ({verdict} the target >= {TARGET_INT_OVER_FLOAT_370M})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
