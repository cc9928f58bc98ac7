"""One analysis = everything the app's pages show for one (model, QuantConfig, prompt, sampling).

The float model and the integer model each continue the prompt with the same sampling settings
(same seed). The integer model runs on the chosen backend with probes on. Both models are then
compared in lockstep on the integer model's sequence (prompt + its continuation), which is the text
the chip actually produced. Computing it once and caching it is what makes page switches instant.

Memory: per-neuron data is kept for a window of tokens only (`window`: the generated part by
default, see `keep_from_for`), every other token as per-token summaries; see probes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import polars as pl

from inspector.backends.base import BackendBase, BackendRun
from inspector.compare.diff import DiffResult, compare
from inspector.compare.perplexity import Perplexities, run_perplexities
from inspector.compare.traces import run_tables, with_underflow
from inspector.lm.generate import GeneratedToken, SamplingSettings, encode_prompt, generate
from inspector.schema import STATE

# The window of tokens whose per-neuron data an analysis keeps: "generated" (the continuation and
# the last prompt token, whose distribution chose the first generated token), or the last N tokens.
GENERATED_WINDOW = "generated"
Window = str | int


def keep_from_for(window: Window, prompt_tokens: int, max_new_tokens: int) -> int:
    """The first token (counted from the start of the prompt) whose per-neuron data is kept."""
    total = prompt_tokens + max_new_tokens
    if window == GENERATED_WINDOW:
        return max(prompt_tokens - 1, 0)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be {GENERATED_WINDOW!r} or a positive number of tokens, got {window!r}")
    return max(total - window, 0)

# on_progress(phase, done, total): phase is "float", "integer" or "diff"; or "wait" with done = the
# position in the queue for a shared simulator (Lava), 1 being next
ProgressFn = Callable[[str, int, int], None]
# on_token(phase, text so far): the continuation as it streams, for "float" and "integer"
TokenFn = Callable[[str, str], None]


@dataclass
class Analysis:
    prompt: str
    sampling: SamplingSettings
    float_tokens: list[GeneratedToken]
    run: BackendRun
    diff: DiffResult
    tables: dict[str, pl.DataFrame]
    window: Window = GENERATED_WINDOW
    calibration_status: str = ""  # "calibration loaded from cache", or computed (BackendBase.calibration_status)

    @property
    def window_start(self) -> int:
        """The first token with per-neuron data (tensors, rasters, state histograms, logits)."""
        return self.diff.window_start

    def nbytes(self) -> int:
        """Memory this analysis holds, roughly: what the run cache counts against its budget."""
        tables = sum(int(t.estimated_size()) for t in self.tables.values())
        probe = self.run.probe.nbytes() if self.run.probe is not None else 0
        second = self.diff.int_probe.nbytes() if self.diff.int_probe is not self.run.probe else 0
        return tables + probe + second + self.diff.nbytes()

    @property
    def float_text(self) -> str:
        return "".join(t.text for t in self.float_tokens)

    @property
    def int_text(self) -> str:
        return "".join(t.text for t in self.run.tokens)

    @property
    def prompt_tokens(self) -> int:
        return len(self.run.prompt_ids)

    @staticmethod
    def producing_position(token: int) -> int:
        """The position whose next-token distribution produced `token` (tokens count from the prompt's start)."""
        return token - 1

    @property
    def window_tokens(self) -> tuple[int, int]:
        """First and last token with per-neuron data (state codes, rasters, tensors)."""
        return self.window_start, self.run.probe.tokens() - 1 if self.run.probe is not None else self.window_start

    def producing_rows(self) -> pl.DataFrame:
        """The diff's per-token rows whose distributions produced the generated tokens: row t predicts
        token t + 1, so rows n-1 .. n+g-2 for a prompt of n tokens and g generated ones."""
        return self.diff.tokens.slice(self.producing_position(self.prompt_tokens), len(self.run.tokens))

    def generation_agreement(self) -> tuple[float, float]:
        """(share of generated tokens where both models ranked the same token first, mean KL in nats)."""
        producing = self.producing_rows()
        if producing.height == 0:
            return 0.0, 0.0
        return float(producing["agree"].mean()), float(producing["kl"].mean())

    def activity_per_token(self) -> dict[str, float]:
        """Chip-wide means per token: messages, synaptic ops, and the share of neurons that sent nothing."""
        per_token = self.tables["activity"].group_by("token").agg(
            pl.col("messages").sum(), pl.col("synops").sum(), pl.col("active_neurons").sum(), pl.col("neurons").sum()
        )
        neurons = max(int(per_token["neurons"].sum()), 1)
        return {
            "messages": float(per_token["messages"].mean() or 0),
            "synops": float(per_token["synops"].mean() or 0),
            "silent_share": 1 - int(per_token["active_neurons"].sum()) / neurons,
        }

    def saturation_totals(self) -> dict[str, int]:
        """Clipped and underflowed values over every site and token, and the MLGRU states' share of them.

        `compared_values` counts the values that have a float counterpart (underflow needs one).
        """
        saturation = self.tables["saturation"]
        compared = saturation.filter(pl.col("underflow").is_not_null())
        states = saturation.filter(pl.col("kind") == STATE)
        states_compared = states.filter(pl.col("underflow").is_not_null())
        return {
            "clipped": int(saturation["clipped"].sum()),
            "values": int(saturation["values"].sum()),
            "underflow": int(compared["underflow"].sum()),
            "compared_values": int(compared["values"].sum()),
            "state_clipped": int(states["clipped"].sum()),
            "state_zero": int(states["zero"].sum()),
            "state_values": int(states["values"].sum()),
            "state_underflow": int(states_compared["underflow"].sum()),
        }

    def state_codes(self, layer: int, core: Optional[int] = None) -> tuple[np.ndarray, str]:
        """The MLGRU state codes of one layer (one core's neurons, or all) over the window, and a label saying which."""
        states = self.tables["states"].filter(pl.col("layer") == layer)
        where = f"layer {layer}"
        if core is not None:
            row = self.tables["cores"].filter(pl.col("core") == core).row(0, named=True)
            states = states.filter(pl.col("neuron").is_between(row["start"], row["end"] - 1))
            where += f", core {core}"
        return states["code"].to_numpy(), where

    @property
    def perplexities(self) -> Perplexities:
        """Each model on its own continuation, and both on the integer model's (see inspector.compare.perplexity)."""
        t = self.diff.tokens
        return run_perplexities(
            self.float_tokens, self.run.tokens, t["nll_float"].to_list(), t["nll_int"].to_list(), self.prompt_tokens,
        )


def analyze(
    backend: BackendBase,
    prompt: str,
    sampling: SamplingSettings,
    on_progress: Optional[ProgressFn] = None,
    on_token: Optional[TokenFn] = None,
    window: Window = GENERATED_WINDOW,
) -> Analysis:
    sampling.validate()
    tokenizer = backend.loaded.tokenizer
    keep_from = keep_from_for(window, len(encode_prompt(tokenizer, prompt)), sampling.max_new_tokens)
    total = sampling.max_new_tokens

    def tick(phase: str, done: int, text: str) -> None:
        if on_token is not None:
            on_token(phase, text)
        if on_progress is not None:
            on_progress(phase, done, total)

    float_tokens = []
    eos = backend.loaded.eos_token_ids
    for token in generate(backend.loaded.model, tokenizer, prompt, **vars(sampling), eos_token_ids=eos):
        float_tokens.append(token)
        tick("float", len(float_tokens), "".join(t.text for t in float_tokens))

    def waiting(position: int) -> None:
        if on_progress is not None:
            on_progress("wait", position, total)

    if on_progress is not None:
        on_progress("integer", 0, total)  # the backend may take a while to start (Lava: seconds)
    run, stream = backend.generate(prompt, sampling, probes=True, record_tensors=True, keep_from=keep_from, on_wait=waiting)
    try:
        for _ in stream:
            tick("integer", len(run.tokens), "".join(t.text for t in run.tokens))
    finally:
        stream.close()  # a stopped run hands a shared simulator to the next one at once
    if on_progress is not None:
        on_progress("diff", 0, 1)
    # reuses the generation's integers if it kept them all
    diff = compare(backend, run.all_ids, integer_probe=run.probe, keep_from=keep_from)
    if on_progress is not None:
        on_progress("diff", 1, 1)
    tables = run_tables(run, backend, tensors=False)  # the long tensor table is built on export only
    tables["saturation"] = with_underflow(tables["saturation"], diff.tensors)
    return Analysis(prompt, sampling, float_tokens, run, diff, tables, window, getattr(backend, "calibration_status", ""))
