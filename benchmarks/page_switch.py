"""Seconds to switch between app pages once the model and its analysis are cached (target: < 1 s).

    python -m benchmarks.page_switch [--model shakespeare]

Runs the app headless with Streamlit's AppTest: the first page pays for loading, calibrating and
running the model; every later switch should only lay out cached results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = [
    "pages/spike_activity.py", "pages/saturation.py", "pages/quantization_error.py", "pages/hardware.py", "pages/learn.py",
    "pages/generation.py",
]
TARGET_SECONDS = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.page_switch")
    parser.add_argument("--model", default=None, help="sample model name (default: the app's default)")
    args = parser.parse_args(argv)
    at = AppTest.from_file(APP, default_timeout=600)
    start = time.perf_counter()
    at.run()
    if args.model:
        at.sidebar.selectbox(key="model_choice").select(args.model).run()
    print(f"first page (load, calibrate, run): {time.perf_counter() - start:.2f} s")
    worst = 0.0
    for page in PAGES:
        start = time.perf_counter()
        at.switch_page(page).run()
        seconds = time.perf_counter() - start
        worst = max(worst, seconds)
        assert not at.exception, at.exception
        print(f"switch to {page:32s} {seconds:.2f} s")
    print(f"slowest switch {worst:.2f} s ({'meets' if worst < TARGET_SECONDS else 'MISSES'} the < {TARGET_SECONDS:.0f} s target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
