"""One analysis = everything the app's pages show for one (model, QuantConfig, prompt, sampling).

The float model and the integer model each continue the prompt with the same sampling settings
(same seed). The integer model runs on the chosen backend with probes on. Both models are then
compared in lockstep on the integer model's sequence (prompt + its continuation), which is the text
the chip actually produced. Computing it once and caching it is what makes page switches instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import polars as pl

from inspector.diff import DiffResult, compare
from inspector.emulator.engine import Emulator, EmulatorRun
from inspector.generate import GeneratedToken, SamplingSettings, encode_prompt, generate
from inspector.perplexity import Perplexities, run_perplexities
from inspector.traces import run_tables

# on_progress(phase, done, total): phase is "float", "integer" or "diff"
ProgressFn = Callable[[str, int, int], None]
# on_token(phase, text so far): the continuation as it streams, for "float" and "integer"
TokenFn = Callable[[str, str], None]


@dataclass
class Analysis:
    prompt: str
    sampling: SamplingSettings
    float_tokens: list[GeneratedToken]
    run: EmulatorRun
    diff: DiffResult
    tables: dict[str, pl.DataFrame]

    @property
    def float_text(self) -> str:
        return "".join(t.text for t in self.float_tokens)

    @property
    def int_text(self) -> str:
        return "".join(t.text for t in self.run.tokens)

    @property
    def prompt_tokens(self) -> int:
        return len(self.run.prompt_ids)

    @property
    def perplexities(self) -> Perplexities:
        """Each model on its own continuation, and both on the integer model's (see inspector.perplexity)."""
        t = self.diff.tokens
        return run_perplexities(self.float_tokens, self.run.tokens, t["nll_float"].to_list(), t["nll_int"].to_list(), self.prompt_tokens)


def analyze(
    emulator: Emulator,
    prompt: str,
    sampling: SamplingSettings,
    on_progress: Optional[ProgressFn] = None,
    on_token: Optional[TokenFn] = None,
) -> Analysis:
    sampling.validate()
    tokenizer = emulator.loaded.tokenizer
    encode_prompt(tokenizer, prompt)
    total = sampling.max_new_tokens

    def tick(phase: str, done: int, text: str) -> None:
        if on_token is not None:
            on_token(phase, text)
        if on_progress is not None:
            on_progress(phase, done, total)

    float_tokens = []
    for token in generate(emulator.loaded.model, tokenizer, prompt, **vars(sampling)):
        float_tokens.append(token)
        tick("float", len(float_tokens), "".join(t.text for t in float_tokens))
    if on_progress is not None:
        on_progress("integer", 0, total)  # the backend may take a while to start (Lava: seconds)
    run, stream = emulator.generate(prompt, sampling, probes=True, record_tensors=True)
    for token in stream:
        tick("integer", len(run.tokens), "".join(t.text for t in run.tokens))
    if on_progress is not None:
        on_progress("diff", 0, 1)
    diff = compare(emulator, run.all_ids, integer_probe=run.probe)  # reuses the generation's integers
    if on_progress is not None:
        on_progress("diff", 1, 1)
    return Analysis(prompt, sampling, float_tokens, run, diff, run_tables(run, emulator))
