"""Tokens per second of the Lava simulation against the emulator on the smallest sample model.

    python -m benchmarks.lava [--tokens 8]

Both backends compute the same integers (tests/test_lava_backend.py); this measures what running
them as a Lava process graph costs. Lava's start-up (spawning its worker process, compiling the
graph, starting the runtime) is reported apart from the steady rate: it is paid once per model.
"""

from __future__ import annotations

import argparse
import time

from inspector.backends import make_backend
from inspector.catalog import sample_models
from inspector.checkpoint import load_checkpoint
from inspector.generate import SamplingSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lava")
    parser.add_argument("--tokens", type=int, default=8)
    args = parser.parse_args(argv)
    models = [load_checkpoint(p) for p in sample_models().values()]
    loaded = min(models, key=lambda m: m.model.num_parameters())
    settings = SamplingSettings(max(args.tokens, 2), 0.0, 0, 0)
    rates = {}
    for key in ("emulator", "lava"):
        backend = make_backend(key, loaded)
        try:
            start = time.perf_counter()
            run, stream = backend.generate("Once upon a time", settings, probes=True)
            next(stream)  # the prompt and the first generated token (for Lava: start-up and compile)
            first = time.perf_counter()
            list(stream)
            end = time.perf_counter()
        finally:
            backend.close()
        rates[key] = (len(run.tokens) - 1) / (end - first)
        print(f"{key:9s} {rates[key]:8.2f} tokens/s after the first token (probes on); first token after {first - start:.2f} s")
    print(f"lava / emulator = {rates['lava'] / rates['emulator']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
