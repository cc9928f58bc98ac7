"""How fast a researcher's first `python -m inspector run` on a 370M checkpoint answers, cold and with calibration cached.

    python -m benchmarks.open_370m             # make the checkpoint once, then a cold run and a cached run
    python -m benchmarks.open_370m --keep-cache  # reuse the calibration cache of an earlier benchmark run

The checkpoint is a random-weight MMfreeLM-370M in the released layout (bf16 `model.safetensors`,
config.json, tokenizer and generation files; `tests/make_released_fixture.py`), written once under
`artifacts/bench-370m/`. Each run is a fresh subprocess with 2 threads (`OMP_NUM_THREADS=2`,
`torch.set_num_threads(2)` via the environment), timed from outside; its peak RSS is its own high-water
mark (`inspector.lm.memory.peak_resident_bytes`, VmHWM, read by the child itself at exit).

Targets (issue 22, on a quiet 2-core machine): cold run, 32 tokens, <= 15 s and <= 2.5 GB; with the
calibration cached <= 8 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "artifacts" / "bench-370m"
TARGETS = {"cold_s": 15.0, "cold_peak_gb": 2.5, "cached_s": 8.0}
PROMPT = "ROMEO: what light through yonder window breaks"
TOKENS = 32


def make_checkpoint(out: Path = CHECKPOINT) -> Path:
    """The released layout at 370M size with random bf16 weights (made once; about 740 MB)."""
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    from safetensors.torch import save_file

    from inspector.lm.config import PUBLISHED_CONFIGS
    from tests.make_released_fixture import random_state_dict, released_config, write_released_checkpoint

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_released_checkpoint(tmp)  # tokenizer and side files (tiny weights, replaced below)
    size = PUBLISHED_CONFIGS["MMfreeLM-370M"]
    config = released_config(size["vocab_size"], hidden_size=size["hidden_size"], layers=size["num_hidden_layers"])
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(random_state_dict(config), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def child(argv: list[str]) -> int:
    """Run the CLI in this process and report its own peak RSS (the parent times the whole process)."""
    from inspector.cli import main

    code = main(argv)
    from inspector.lm.memory import peak_resident_bytes

    print(json.dumps({"peak_rss_bytes": peak_resident_bytes()}), file=sys.stderr)
    return code


def timed_run(checkpoint: Path, cache: Path, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", LOIHI_INSPECTOR_CACHE=str(cache))
    argv = ["run", "--model", str(checkpoint), "--prompt", PROMPT, "--tokens", str(TOKENS), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.open_370m", "child", *argv], capture_output=True, text=True, env=env, cwd=REPO,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = json.loads(proc.stderr.strip().splitlines()[-1])["peak_rss_bytes"]
    return {"seconds": seconds, "peak_rss_gb": peak / 1e9, "cache_hit": "calibration loaded from cache" in proc.stderr}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.open_370m")
    parser.add_argument("--keep-cache", action="store_true", help="do not start from an empty calibration cache")
    args = parser.parse_args(argv)
    checkpoint = make_checkpoint()
    with tempfile.TemporaryDirectory(prefix="open370m-") as tmp:
        cache = Path(tmp) / "cache" if not args.keep_cache else REPO / "artifacts" / "bench-370m-cache"
        cold = timed_run(checkpoint, cache, Path(tmp) / "traces-cold")
        cached = timed_run(checkpoint, cache, Path(tmp) / "traces-cached")
    print(json.dumps({"cold": cold, "cached": cached}))
    ok_cold = cold["seconds"] <= TARGETS["cold_s"] and cold["peak_rss_gb"] <= TARGETS["cold_peak_gb"]
    ok_cached = cached["seconds"] <= TARGETS["cached_s"] and cached["cache_hit"]
    print(f"370M bf16 checkpoint, `inspector run`, {TOKENS} tokens, 2 threads:")
    print(f"  cold   {cold['seconds']:.1f} s, peak RSS {cold['peak_rss_gb']:.2f} GB "
          f"({'meets' if ok_cold else 'MISSES'} <= {TARGETS['cold_s']:.0f} s, <= {TARGETS['cold_peak_gb']} GB)")
    print(f"  cached {cached['seconds']:.1f} s, peak RSS {cached['peak_rss_gb']:.2f} GB, calibration "
          f"{'loaded from cache' if cached['cache_hit'] else 'NOT loaded from cache'} "
          f"({'meets' if ok_cached else 'MISSES'} <= {TARGETS['cached_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
