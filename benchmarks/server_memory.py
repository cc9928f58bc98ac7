"""Server memory under several users with long prompts: RSS after 20 runs of 2,000-token prompts
across 3 sessions must stay under a stated bound, and must drop once the sessions end.

    python -m benchmarks.server_memory [--runs 20] [--sessions 3] [--prompt-tokens 2000] [--tokens 4]

What it drives: the library and the process-wide run cache directly, exactly as the app's
`inspector/ui/runs.py` does for each page view (RUNS.get, else analyze + RUNS.put, owned by the
session; `RUNS.release` when a session ends), without Streamlit's web server: the server's
memory is this process's memory. Sessions take turns round-robin; every third request of a
session repeats settings another session already ran (a second tab with the same settings),
which the shared cache must serve without computing. Models: the shipped sample models, the
app's default window (per-neuron detail for the generated tokens), the default budget.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import torch

from inspector.analysis import GENERATED_WINDOW, analyze
from inspector.catalog import SAMPLE_MODELS_DIR, sample_models
from inspector.checkpoint import load_checkpoint
from inspector.emulator.engine import Emulator
from inspector.generate import SamplingSettings
from inspector.run_cache import RUNS, _release_to_os

BOUND_MB = 1536  # the stated bound for RSS after the runs (the sample models' server: ~0.45 GB at rest)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def long_prompt(tokenizer, corpus: str, offset: int, tokens: int) -> str:
    """`tokens` tokens of the corpus from character `offset` (measured, not guessed)."""
    text = corpus[offset : offset + tokens * 4]
    ids = tokenizer.encode(text).ids[:tokens]
    return tokenizer.decode(ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_memory")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=4, help="tokens generated per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = {name: Emulator(load_checkpoint(path)) for name, path in sample_models().items()}
    corpora = {
        name: (SAMPLE_MODELS_DIR / "corpora" / e.loaded.card["corpus"]).read_text(encoding="utf-8") for name, e in models.items()
    }
    gc.collect()
    base = rss_mb()
    print(f"baseline RSS with {len(models)} sample models loaded and converted: {base:.0f} MB")
    history: dict[int, list[tuple]] = {s: [] for s in range(args.sessions)}
    computed = shared = 0
    peak_after = 0.0
    start = time.perf_counter()
    for request in range(args.runs):
        session = request % args.sessions
        other = (session + 1) % args.sessions
        if request >= args.sessions and request % 3 == 2 and history[other]:
            key = history[other][-1]  # the same settings as another session's latest run
        else:
            name = list(models)[request % len(models)]
            offset = 7919 * request % (len(corpora[name]) - args.prompt_tokens * 6)
            prompt = long_prompt(models[name].loaded.tokenizer, corpora[name], offset, args.prompt_tokens)
            key = (name, prompt, SamplingSettings(args.tokens, 0.8, 40, request), GENERATED_WINDOW)
        history[session].append(key)
        tick = time.perf_counter()
        if RUNS.get(key, session) is None:
            name, prompt, sampling, window = key
            analysis = analyze(models[name], prompt, sampling, window=window)
            RUNS.put(key, analysis, analysis.nbytes(), session)
            del analysis
            computed += 1
            what = f"computed {models[name].loaded.name}"
        else:
            shared += 1
            what = "shared from the cache"
        gc.collect()
        now = rss_mb()
        peak_after = max(peak_after, now)
        print(
            f"run {request + 1:2d} session {session}: {what:28s} {time.perf_counter() - tick:5.1f} s  "
            f"RSS {now:6.0f} MB  cache {len(RUNS)} runs, {RUNS.total_bytes() / 2**20:.0f} MB"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for session in range(args.sessions):
        RUNS.release(session)  # the sessions end (the tabs are closed)
    gc.collect()
    _release_to_os()
    after = rss_mb()
    print(
        f"{args.runs} runs ({computed} computed, {shared} shared) of {args.prompt_tokens}-token prompts across "
        f"{args.sessions} sessions in {time.perf_counter() - start:.0f} s"
    )
    print(
        f"RSS after each run: at most {peak_after:.0f} MB (bound {BOUND_MB} MB: "
        f"{'within' if peak_after <= BOUND_MB else 'EXCEEDED'})",
    )
    print(f"peak RSS during a run: {peak:.0f} MB; after every session ended: {after:.0f} MB (baseline {base:.0f} MB)")
    return 0 if peak_after <= BOUND_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
