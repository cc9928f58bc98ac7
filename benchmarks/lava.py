"""Tokens per second of the Lava simulation against the emulator on the smallest sample model.

    python -m benchmarks.lava [--tokens 8]
    python -m benchmarks.lava --published MMfreeLM-370M --tokens 2   # bit-exactness at a published size

Both backends compute the same integers (tests/test_lava_backend.py); this measures what running
them as a Lava process graph costs. Lava's start-up (spawning its worker process, compiling the
graph, starting the runtime) is reported apart from the steady rate: it is paid once per model.
"""

from __future__ import annotations

import argparse
import time

from inspector.backends.base import make_backend
from inspector.lm.catalog import sample_models
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings


def timed_generation(key: str, loaded, prompt: str, settings: SamplingSettings):
    """Generate with probes on one backend: (run, seconds to the first token, seconds for the rest).

    The first token includes the prompt and, for Lava, start-up and compile; it is timed apart."""
    backend = make_backend(key, loaded)
    try:
        start = time.perf_counter()
        run, stream = backend.generate(prompt, settings, probes=True)
        next(stream)
        first = time.perf_counter()
        list(stream)
        return run, first - start, time.perf_counter() - first
    finally:
        backend.close()


def published_check(name: str, tokens: int) -> int:
    """Greedy generation of a random-weight published model on the emulator and on Lava, probes on:
    the same tokens, logits and every probed integer, or a non-zero exit naming the first difference."""
    import resource

    import torch

    from benchmarks.scale import random_published

    loaded = random_published(name)
    settings = SamplingSettings(tokens, 0.0, 0, 0)
    runs = {}
    for key in ("emulator", "lava"):
        run, first, rest = timed_generation(key, loaded, "the quick brown fox", settings)
        runs[key] = run
        print(f"{key:9s} first token after {first:.1f} s, then {rest / max(len(run.tokens) - 1, 1):.1f} s per token")
    emulator, lava = runs["emulator"].probe, runs["lava"].probe
    if [t.token_id for t in runs["emulator"].tokens] != [t.token_id for t in runs["lava"].tokens]:
        print("DIFFERENT tokens")
        return 1
    for key in emulator.sites:
        if emulator.sites[key].codes and not torch.equal(emulator.site_codes(key), lava.site_codes(key)):
            print(f"DIFFERENT codes at {key}")
            return 1
    if not torch.equal(emulator.site_values("logits"), lava.site_values("logits")):
        print("DIFFERENT logits")
        return 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"{name}: {tokens} tokens, every probed integer and the logits identical on both backends "
          f"(largest child process peak RSS {peak:.2f} GB, pages shared with this process at its fork included)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lava")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--published", help="check bit-exactness on a random-weight published configuration instead")
    args = parser.parse_args(argv)
    if args.published:
        return published_check(args.published, args.tokens)
    models = [load_checkpoint(p) for p in sample_models().values()]
    loaded = min(models, key=lambda m: m.model.num_parameters())
    settings = SamplingSettings(max(args.tokens, 2), 0.0, 0, 0)
    rates = {}
    for key in ("emulator", "lava"):
        run, first, rest = timed_generation(key, loaded, "Once upon a time", settings)
        rates[key] = (len(run.tokens) - 1) / rest
        print(f"{key:9s} {rates[key]:8.2f} tokens/s after the first token (probes on); first token after {first:.2f} s")
    print(f"lava / emulator = {rates['lava'] / rates['emulator']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
