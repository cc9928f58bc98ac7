"""The seed paper's Loihi 2 figures, as reported, and our estimate beside them.

Abreu, Shrestha, Zhu, Eshraghian, "Neuromorphic Principles for Efficient Large Language Models on
Intel Loihi 2", arXiv 2503.18002 (ICLR 2025 workshop SCOPE). It measured MMfreeLM-370M on 24 chips of
a 32-chip Loihi 2 system ("Alia Point", N3C1 silicon), one block per chip, embedding and LM head on
the host, batch 1, system power; and transformers in FP16 on an NVIDIA Jetson Orin Nano 8GB. The
figures below are its Tables 1-3 and text as reported (the abstract states their ratios: 3x
throughput, 2x less energy, 6.6x lower time to first token); every one is labeled "as reported".

Our estimate is compared with them in two ways: absolute figures (`MEASURED_24` beside an
`Estimate`) and ratios against a GPU baseline (`GpuBaseline`, defaulting to the paper's Jetson
figures, editable), computed the way the paper states its own:

    throughput ratio = our tokens/s / baseline tokens/s
    energy ratio     = baseline energy per token / our energy per token
    TTFT ratio       = baseline time to first token / our time to first token
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from inspector.chip.estimate import Estimate
from inspector.errors import InspectorError

PAPER = "Abreu et al., arXiv 2503.18002 (2025)"
AS_REPORTED = PAPER + ", as reported"
PROMPT_TOKENS = 500  # the paper's time-to-first-token prompt


@dataclass(frozen=True)
class Figure:
    name: str  # key
    label: str
    unit: str
    loihi: float  # the 24-chip Loihi 2 measurement
    jetson: tuple[float, float]  # the Jetson Orin Nano range (several transformers)


MEASURED_24 = (
    Figure("gen_tps", "generation throughput", "tokens/s", 41.5, (12.6, 15.4)),
    Figure("gen_mj", "generation energy", "mJ/token", 405.0, (719.0, 1200.0)),
    Figure("prefill_tps", "prefill throughput", "tokens/s", 6632.0, (627.0, 3861.0)),
    Figure("prefill_mj", "prefill energy", "mJ/token", 3.7, (4.4, 17.9)),
    Figure("ttft_s", f"time to first token, {PROMPT_TOKENS}-token prompt", "s", 0.099, (0.659, 0.659)),
)
MEASURED = {f.name: f for f in MEASURED_24}
SINGLE_CHIP = {"gen_tps": 71.3, "gen_mj": 59.0}  # the paper's single-chip *estimate* (not a measurement)
CHIPS_MEASURED = 24
LM_HEAD_CHIPS_PAPER = 7  # the paper's estimate of the chips the LM head alone would need (31 of 32 in all)

STATEMENTS = (
    ("system", "24 of the 32 chips of an 'Alia Point' Loihi 2 system (N3C1); one block per chip; embedding and LM head on "
     "the host; the LM head alone would need about 7 more chips"),
    ("quantization on chip", "ternary weights, 24-bit fixed-point activations"),
    ("single chip (estimate)", "71.3 tokens/s at 59 mJ/token: the 24-chip system is 6.9x worse in energy per token because "
     "all 24 chips draw static power while, in generation, one is busy at a time"),
    ("context length", "Loihi 2's tokens/s and energy per token stay constant from 500 to 16,000 tokens of context"),
    ("vs H100 (generation)", "about 3x the throughput and at least 14x less energy per token on the same model"),
    ("vs H100 (prefill)", "the H100 wins prefill (11.4k-84.6k tokens/s) and reaches 0.9 mJ/token at 16k tokens"),
    ("accuracy", "the GPU study is W8A16 and costs 0.4% against FP16 ('no accuracy loss'); the MatMul-free 370M averages "
     "39.6 on the zero-shot suite, Qwen2.5-0.5B 51.1: the comparison is not at equal accuracy"),
)
PAPER_NOTE = (
    "The paper's figures are shown as reported. Its GPU side is FP16 transformers on a Jetson Orin Nano; the accuracy of the "
    "MatMul-free 370M (39.6 zero-shot average) is below Qwen2.5-0.5B's (51.1), so the comparison is not at equal accuracy."
)


def measured_table() -> pl.DataFrame:
    """The paper's 24-chip table: Loihi 2 beside the Jetson range, each as reported."""
    def jetson(f: Figure) -> str:
        lo, hi = f.jetson
        return f"{lo:,.4g}" if lo == hi else f"{lo:,.4g}-{hi:,.4g}"

    return pl.DataFrame(
        {
            "figure": [f.label for f in MEASURED_24],
            "unit": [f.unit for f in MEASURED_24],
            "Loihi 2, 24 chips": [f.loihi for f in MEASURED_24],
            "Jetson Orin Nano 8GB, FP16": [jetson(f) for f in MEASURED_24],
            "source": ["as reported (Tables 1-3)"] * len(MEASURED_24),
        }
    )


def statements_table() -> pl.DataFrame:
    return pl.DataFrame(
        {"about": [a for a, _ in STATEMENTS], "the paper says": [t for _, t in STATEMENTS],
         "source": [AS_REPORTED] * len(STATEMENTS)}
    )


def estimate_figures(est: Estimate) -> dict[str, float]:
    """Our estimate's five figures, keyed like `MEASURED_24`."""
    return {
        "gen_tps": est.generation.tokens_per_s, "gen_mj": est.generation.energy_per_token_mj,
        "prefill_tps": est.prefill.tokens_per_s, "prefill_mj": est.prefill.energy_per_token_mj,
        "ttft_s": est.time_to_first_token_s,
    }


def residual_table(figures: dict[str, float]) -> pl.DataFrame:
    """paper measured | our estimate | residual (%) (100 x (estimate / measured - 1)), one row per figure."""
    return pl.DataFrame(
        {
            "figure": [f"{f.label} ({f.unit})" for f in MEASURED_24],
            "paper measured (24 chips)": [f.loihi for f in MEASURED_24],
            "our estimate": [figures[f.name] for f in MEASURED_24],
            "residual (%)": [round(100 * (figures[f.name] / f.loihi - 1), 2) + 0.0 for f in MEASURED_24],
        }
    )


class BaselineError(InspectorError):
    pass


JETSON_DEFAULTS = {  # the strongest Jetson figure of each range (the hardest baseline to beat)
    "tokens_per_s": 15.4, "energy_mj": 719.0, "ttft_s": 0.659,
}
JETSON_SOURCE = "the paper's Jetson Orin Nano 8GB figure (FP16 transformers), as reported: the best of its range"
BASELINE_LABELS = {
    "tokens_per_s": "baseline tokens/s (generation)",
    "energy_mj": "baseline energy per token (mJ, generation)",
    "ttft_s": "baseline time to first token (s)",
}


@dataclass(frozen=True)
class GpuBaseline:
    """A GPU baseline: by default the paper's Jetson Orin Nano figures (the best of each reported range)."""

    tokens_per_s: float = JETSON_DEFAULTS["tokens_per_s"]
    energy_mj: float = JETSON_DEFAULTS["energy_mj"]
    ttft_s: float = JETSON_DEFAULTS["ttft_s"]

    def __post_init__(self) -> None:
        for name, label in BASELINE_LABELS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise BaselineError(f"{label} must be a positive number, got {value!r}")
            if value > 1e9:
                raise BaselineError(f"{label} = {value:g} is absurd")

    def table(self) -> pl.DataFrame:
        """The baseline's figures with where each comes from."""
        return pl.DataFrame(
            {
                "figure": list(BASELINE_LABELS.values()),
                "value": [float(getattr(self, n)) for n in BASELINE_LABELS],
                "source": [
                    JETSON_SOURCE if getattr(self, n) == JETSON_DEFAULTS[n] else "entered by you" for n in BASELINE_LABELS
                ],
            }
        )


PAPER_CLAIMS = (
    # measure, the paper's ratio (Loihi / Jetson, higher is better for Loihi), what the paper says
    ("throughput (generation)", 3.0, "up to 3x higher throughput than transformers on a Jetson Orin Nano"),
    ("energy per token (generation)", 2.0, "2x less energy per token"),
    ("time to first token (500-token prompt)", 6.6, "6.6x lower time to first token, batch size 1"),
)


def ratios(ours: dict[str, float], baseline: GpuBaseline) -> pl.DataFrame:
    """Our estimate's ratios against the baseline beside the paper's own, one row per claim.

    ours: our five figures (`estimate_figures`)."""
    mine = (
        ours["gen_tps"] / baseline.tokens_per_s,
        baseline.energy_mj / ours["gen_mj"],
        baseline.ttft_s / ours["ttft_s"],
    )
    paper_vs_baseline = (
        MEASURED["gen_tps"].loihi / baseline.tokens_per_s,
        baseline.energy_mj / MEASURED["gen_mj"].loihi,
        baseline.ttft_s / MEASURED["ttft_s"].loihi,
    )
    return pl.DataFrame(
        {
            "measure": [m for m, _, _ in PAPER_CLAIMS],
            "paper's claim": [r for _, r, _ in PAPER_CLAIMS],
            "our estimate vs this baseline": pl.Series(mine, dtype=pl.Float64),
            "paper's 24-chip figure vs this baseline": pl.Series(paper_vs_baseline, dtype=pl.Float64),
            "paper says": [t for _, _, t in PAPER_CLAIMS],
        }
    )


def context_points() -> list[dict]:
    """The paper's points for the context-length chart, as reported: Loihi 2 flat from 500 to 16k
    tokens; the Jetson range placed at a 500-token context (the time-to-first-token prompt; the context
    of its generation figures is our assumption)."""
    gen_tps, gen_mj = MEASURED["gen_tps"], MEASURED["gen_mj"]
    loihi = [
        {"system": f"paper: Loihi 2, 24 chips ({context:,} tokens, as reported)", "context_tokens": context,
         "tokens_per_s": gen_tps.loihi, "mj_per_token": gen_mj.loihi}
        for context in (500, 16000)
    ]
    (tps_lo, tps_hi), (mj_lo, mj_hi) = gen_tps.jetson, gen_mj.jetson
    jetson = {
        "system": "paper: Jetson Orin Nano range (as reported; 500-token context assumed)", "context_tokens": 500,
        "tokens_per_s": (tps_lo + tps_hi) / 2, "tokens_per_s_low": tps_lo, "tokens_per_s_high": tps_hi,
        "mj_per_token": (mj_lo + mj_hi) / 2, "mj_per_token_low": mj_lo, "mj_per_token_high": mj_hi,
    }
    return [*loihi, jetson]
