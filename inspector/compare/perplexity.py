"""Perplexities that say which model read which text.

Two different questions, never to be confused (issue 11, point 6):
- *Each model on its own continuation*: how sure each model was of the tokens it chose itself. The
  float model's continuation and the integer model's are different texts, so these two numbers
  describe two different texts.
- *Both models on the same text* (teacher forcing): the integer model's text (prompt plus its
  continuation), read by both. Only this pair compares the models on equal terms.

Perplexity is exp(mean negative log-likelihood in nats) of the untempered distribution
(softmax of the logits), independent of the sampling temperature and top-k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from inspector.lm.generate import GeneratedToken
from inspector.lm.tokenizer import encode_document

MAX_PERPLEXITY_TOKENS = 1024  # the free-text box: both models run on at most this many tokens


@dataclass(frozen=True)
class Perplexities:
    float_own: float  # float model on the float model's continuation
    int_own: float  # integer model on the integer model's continuation
    float_on_int_text: float  # float model teacher-forced on the integer model's continuation
    int_on_int_text: float  # integer model on the same tokens (equals int_own: same logits)
    float_tokens: int  # predictions averaged for float_own
    int_tokens: int  # predictions averaged for the three others


def own_continuation_perplexity(tokens: list[GeneratedToken]) -> float:
    """exp(mean NLL) of the tokens a model generated, under the logits they were drawn from."""
    if not tokens:
        return float("nan")
    nll = [-float(torch.log_softmax(t.logits.double(), -1)[t.token_id]) for t in tokens]
    return math.exp(sum(nll) / len(nll))


def perplexity_from_nll(nll: list[float]) -> float:
    values = [v for v in nll if v == v]  # drop NaN (the last position predicts nothing)
    return math.exp(sum(values) / len(values)) if values else float("nan")


def run_perplexities(
    float_tokens: list[GeneratedToken], int_tokens: list[GeneratedToken], nll_float: list[float], nll_int: list[float],
    prompt_tokens: int,
) -> Perplexities:
    """All four numbers for one analysis.

    `nll_float`/`nll_int`: per-position NLL of the lockstep comparison on the integer model's
    sequence (position t scores token t+1). Only the positions that predict generated tokens
    (t = prompt_tokens - 1 ... end - 1) are averaged, so both pairs cover the same predictions.
    """
    generated = slice(prompt_tokens - 1, prompt_tokens - 1 + len(int_tokens))
    return Perplexities(
        float_own=own_continuation_perplexity(float_tokens),
        int_own=own_continuation_perplexity(int_tokens),
        float_on_int_text=perplexity_from_nll(nll_float[generated]),
        int_on_int_text=perplexity_from_nll(nll_int[generated]),
        float_tokens=len(float_tokens),
        int_tokens=len(int_tokens),
    )


@dataclass(frozen=True)
class TextIds:
    ids: list[int]
    total: int  # tokens in the whole text, before cutting to MAX_PERPLEXITY_TOKENS

    @property
    def truncated(self) -> bool:
        return self.total > len(self.ids)


def perplexity_text_ids(tokenizer: Tokenizer, text: str, limit: int = MAX_PERPLEXITY_TOKENS) -> TextIds:
    """The tokens of a free text, cut to `limit`, remembering how long it was so the cut can be said."""
    ids = encode_document(tokenizer, text)  # as a document: with the checkpoint's BOS, if it uses one
    return TextIds(ids[:limit], len(ids))
