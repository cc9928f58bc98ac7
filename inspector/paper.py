"""The seed paper's Loihi 2 results, and our estimate's ratios computed the way the paper states them.

Abreu, Shrestha, Zhu, Eshraghian, "Neuromorphic Principles for Efficient Large Language Models on
Intel Loihi 2", arXiv 2503.18002 (2025). Its chip results are *preliminary, per the paper*, and are
all ratios against transformer LLMs on an edge GPU (NVIDIA Jetson Orin Nano): "up to 3x higher
throughput with 2x less energy" (abstract) and 6.6x lower time to first token for a 500-token
prompt at batch size 1. Its "no accuracy loss" result is from a GPU study of the quantized model,
not from the chip. So the page compares ratios with ratios: the user gives the GPU baseline's
tokens/s, power and time to first token, and our estimate is divided by it the same way:

    throughput ratio = our tokens/s / baseline tokens/s
    energy ratio     = baseline energy per token / our energy per token   (baseline J = W / tokens/s)
    TTFT ratio       = baseline time to first token / our time to first token

Baseline defaults: only the power has a public source we could cite offline (NVIDIA's Jetson Orin
Nano 8 GB module is specified for 7 W to 15 W power modes; 15 W is its highest standard mode). The
paper's own baseline measurements (tokens/s, time to first token of each transformer it ran) are
in the paper; we could not read them here, so there is no default: enter them from the paper or
from your own measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import polars as pl

from inspector.errors import InspectorError
from inspector.estimate import Estimate

PAPER = "Abreu et al., arXiv 2503.18002 (2025)"
PAPER_CLAIMS = (
    # measure, the paper's ratio (ours / baseline, higher is better for us), what the paper says
    ("throughput (generation)", 3.0, "up to 3x higher throughput than transformer LLMs on a Jetson Orin Nano"),
    ("energy per token (generation)", 2.0, "2x less energy per token"),
    ("time to first token (500-token prompt)", 6.6, "6.6x lower time to first token, batch size 1"),
)
PAPER_NOTE = (
    "Preliminary, per the paper: the chip results are ratios against transformer LLMs on an NVIDIA Jetson "
    "Orin Nano; the 'no accuracy loss' of the quantized 370M model is from a GPU study, not from the chip."
)
JETSON_ORIN_NANO_WATTS = 15.0
JETSON_SOURCE = "NVIDIA Jetson Orin Nano 8 GB module specification: 7 W to 15 W power modes (15 W is the highest standard mode)"


class BaselineError(InspectorError):
    pass


@dataclass(frozen=True)
class GpuBaseline:
    """A GPU baseline for one model: None where the user has not given a figure."""

    tokens_per_s: Optional[float] = None
    watts: float = JETSON_ORIN_NANO_WATTS
    ttft_s: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("tokens_per_s", "watts", "ttft_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise BaselineError(f"the baseline's {name} must be a positive number (or left empty), got {value!r}")

    def table(self) -> pl.DataFrame:
        """The baseline's figures with where each comes from."""
        watts_source = JETSON_SOURCE if self.watts == JETSON_ORIN_NANO_WATTS else "entered by you"
        return pl.DataFrame(
            {
                "figure": ["tokens/s (generation)", "power (W)", "time to first token (s)"],
                "value": pl.Series([self.tokens_per_s, self.watts, self.ttft_s], dtype=pl.Float64),
                "source": [
                    "entered by you" if self.tokens_per_s is not None else "not given (no verifiable default)",
                    watts_source,
                    "entered by you" if self.ttft_s is not None else "not given (no verifiable default)",
                ],
            }
        )

    @property
    def energy_per_token_mj(self) -> Optional[float]:
        return None if self.tokens_per_s is None else self.watts / self.tokens_per_s * 1e3


def ratios(est: Estimate, baseline: GpuBaseline) -> pl.DataFrame:
    """Our estimate's ratios beside the paper's, one row per claim; null where the baseline lacks a figure."""
    energy = baseline.energy_per_token_mj
    ours = (
        None if baseline.tokens_per_s is None else est.generation.tokens_per_s / baseline.tokens_per_s,
        None if energy is None else energy / est.generation.energy_per_token_mj,
        None if baseline.ttft_s is None else baseline.ttft_s / est.time_to_first_token_s,
    )
    return pl.DataFrame(
        {
            "measure": [m for m, _, _ in PAPER_CLAIMS],
            "paper (ratio vs GPU)": [r for _, r, _ in PAPER_CLAIMS],
            "our estimate (ratio vs your baseline)": pl.Series(ours, dtype=pl.Float64),
            "paper says": [t for _, _, t in PAPER_CLAIMS],
        }
    )
