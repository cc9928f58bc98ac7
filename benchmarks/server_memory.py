"""Server memory under several users with long prompts: RSS after 20 runs of 2,000-token prompts
across 3 sessions must stay under a stated bound, and must drop once the sessions end.

    python -m benchmarks.server_memory [--runs 20] [--sessions 3] [--prompt-tokens 2000] [--tokens 4]
    python -m benchmarks.server_memory --browser [--prompt-tokens 4009] [--model shakespeare] [--tokens 8]

`--browser`: a real `streamlit run app.py` server and one headless-Chromium tab (Playwright, Debian
chromium). The tab types a prompt of exactly `--prompt-tokens` tokens of the sample corpus into the
sidebar, then visits every page in turn, waiting for each to finish; the server's RSS is sampled
every 0.2 s throughout. Then the tab is closed and RSS is followed for up to 60 s. Targets: under
`BROWSER_PEAK_MB` (1.5 GB) on every page, and below `BROWSER_AFTER_MB` (1 GB) within 60 s of the
tab closing. Exit status 0 only if both hold.

The default mode below drives the library directly:

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
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch

from inspector.backends.emulator import Emulator
from inspector.compare.analysis import GENERATED_WINDOW, analyze
from inspector.lm.catalog import DEFAULT_SAMPLE_MODEL, SAMPLE_MODELS_DIR, sample_models
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings
from inspector.serve.run_cache import RUNS, _release_to_os

REPO = Path(__file__).resolve().parents[1]
BOUND_MB = 1536  # the stated bound for RSS after the runs (the sample models' server: ~0.45 GB at rest)
BROWSER_PEAK_MB = 1536  # --browser: server RSS on every page, with a 4,009-token prompt
BROWSER_AFTER_MB = 1024  # --browser: server RSS within AFTER_WAIT_S of the tab closing
AFTER_WAIT_S = 60.0
PAGES = [  # (title in the navigation, heading)
    ("Generation", "Generation"), ("Spike activity", "Spike activity"), ("State saturation", "State saturation"),
    ("Quantization error", "Quantization error"), ("Sensitivity", "Sensitivity"), ("Hardware", "Hardware"),
    ("Learn", "Learn"),
]


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


def process_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Sampler(threading.Thread):
    """Samples a process's RSS every `every_s` seconds, labelled with the phase set last."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.phase = "start"
        self.samples: list[tuple[float, str, float]] = []  # (time, phase, MB)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.monotonic(), self.phase, process_rss_mb(self.pid)))
            time.sleep(self.every_s)

    def peak(self, phase: str) -> float:
        return max((mb for _, p, mb in self.samples if p == phase), default=float("nan"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settle(page, timeout_ms: int) -> None:
    """Wait until Streamlit has finished running the script."""
    page.wait_for_timeout(1000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


def browser_main(args) -> int:
    """The 4,009-token prompt on every page of a real server, then the tab closed (see the module docstring)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    path = sample_models()[args.model]
    loaded = load_checkpoint(path)
    corpus = (SAMPLE_MODELS_DIR / "corpora" / loaded.card["corpus"]).read_text(encoding="utf-8")
    prompt = long_prompt(loaded.tokenizer, corpus, 0, args.prompt_tokens)
    prompt_tokens = len(loaded.tokenizer.encode(prompt).ids)
    del loaded
    port = _free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = tempfile.NamedTemporaryFile(prefix="server_memory_", suffix=".log", delete=False)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    sampler = Sampler(server.pid)
    ok = True
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("streamlit did not start within 60 s") from None
                time.sleep(0.5)
        sampler.start()
        print(f"server RSS at start: {process_rss_mb(server.pid):.0f} MB; prompt: {prompt_tokens:,} tokens of {args.model}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1200, "height": 1400})
            page = context.new_page()
            timeout_ms = int(args.page_timeout * 1000)
            sampler.phase = "first page (model loading, short prompt)"
            page.goto(f"{url}/?model={args.model}&tokens={args.tokens}", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Generation").first.wait_for(timeout=timeout_ms)
            _settle(page, timeout_ms)
            print(f"  {sampler.phase:45s} peak {sampler.peak(sampler.phase):6.0f} MB", flush=True)
            box = page.get_by_label("Prompt", exact=True)
            box.fill(prompt)
            for title, heading in PAGES:
                sampler.phase = title
                tick = time.monotonic()
                if title == "Generation":
                    box.press("Control+Enter")  # applies the long prompt: the analysis runs here
                else:
                    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
                try:
                    page.get_by_role("heading", name=heading).first.wait_for(timeout=timeout_ms)
                    _settle(page, timeout_ms)
                except PlaywrightTimeout:
                    ok = False
                    so_far = sampler.peak(title)
                    print(f"  {title:45s} did not finish within {args.page_timeout:.0f} s (peak so far {so_far:.0f} MB)")
                    break
                errors = page.locator('[data-testid="stException"]').count()
                peak = sampler.peak(title)
                ok &= peak < BROWSER_PEAK_MB and errors == 0
                print(
                    f"  {title:45s} peak {peak:6.0f} MB  {time.monotonic() - tick:6.1f} s"
                    + (f"  ({errors} exception(s) on the page)" if errors else ""),
                    flush=True,
                )
            sampler.phase = "after the tab closed"
            closed = time.monotonic()
            context.close()
            browser.close()
        below = None  # seconds after closing when RSS was first below the target
        while time.monotonic() - closed < AFTER_WAIT_S:  # followed for the whole minute: when the reaper frees the runs
            time.sleep(0.5)
            if below is None and process_rss_mb(server.pid) < BROWSER_AFTER_MB:
                below = time.monotonic() - closed
        after = process_rss_mb(server.pid)
        sampler.done.set()
        followed = [(t - closed, mb) for t, p, mb in sampler.samples if p == sampler.phase]
        for mark in (0, 10, 20, 30, 45, 60):
            near = min(followed, key=lambda sample: abs(sample[0] - mark), default=None)
            if near is not None:
                print(f"  {mark:2d} s after the tab closed: {near[1]:6.0f} MB")
        overall = max((mb for _, p, mb in sampler.samples if p in dict(PAGES)), default=float("nan"))
        print(
            f"peak on the pages: {overall:.0f} MB (target < {BROWSER_PEAK_MB} MB: "
            f"{'met' if overall < BROWSER_PEAK_MB else 'MISSED'})"
        )
        if below is None:
            ok = False
            print(f"after the tab closed: {after:.0f} MB after {AFTER_WAIT_S:.0f} s (target < {BROWSER_AFTER_MB} MB: MISSED)")
        else:
            print(
                f"after the tab closed: below {BROWSER_AFTER_MB} MB {below:.1f} s after closing (target: 60 s); "
                f"{after:.0f} MB after {AFTER_WAIT_S:.0f} s"
            )
    finally:
        sampler.done.set()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    text = Path(log.name).read_text(errors="replace")
    if "Traceback" in text:
        print(f"the server log has a traceback: {log.name}")
        ok = False
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_memory")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=None, help="default: 2000, or 4009 with --browser")
    parser.add_argument("--tokens", type=int, default=None, help="tokens generated per run (default: 4, or 8 with --browser)")
    parser.add_argument("--browser", action="store_true", help="a real server and a headless-Chromium tab on every page")
    parser.add_argument("--model", default=DEFAULT_SAMPLE_MODEL, help="--browser: the sample model")
    parser.add_argument("--page-timeout", type=float, default=1800.0, help="--browser: seconds a page may take")
    args = parser.parse_args(argv)
    if args.browser:
        args.prompt_tokens = args.prompt_tokens or 4009
        args.tokens = args.tokens or 8
        return browser_main(args)
    args.prompt_tokens = args.prompt_tokens or 2000
    args.tokens = args.tokens or 4
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
