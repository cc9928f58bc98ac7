"""Token-by-token generation, usable without Streamlit.

The MLGRU is a recurrent network: the prompt is run once (prefill) and each new token then costs a
single step that carries one state vector per layer forward. Nothing is recomputed per token, which
is also how the model runs on Loihi 2.

`generate` drives both models: the float model directly, and the integer model through a backend's
step function (`BackendBase.generate` wraps `step_fn` and fills an `BackendRun`). An analysis
(`inspector/compare/analysis.py`) generates with each using the same settings, then compares them in
lockstep on the integer model's sequence (`inspector/compare/diff.py`).

Sampling is deterministic: the same model, prompt, settings and seed give the same tokens, because
every random draw comes from one `torch.Generator` seeded with `seed`.

End of sequence, as Hugging Face's `generate` does it: a run stops after the checkpoint's EOS token
(`eos_token_id` of generation_config.json, else of config.json; `LoadedModel.eos_token_ids`), which is
kept as the last generated token (`GeneratedToken.is_eos`), unless the user asks to go on past it
(`SamplingSettings.ignore_eos`: the sidebar's "Continue past end-of-sequence", the CLI's `--ignore-eos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Protocol, Sequence

import torch
from tokenizers import Tokenizer

from inspector.errors import PromptError
from inspector.lm.tokenizer import IncrementalDecoder, decode, encode, encode_document

MAX_PROMPT_TOKENS = 4096
MAX_NEW_TOKENS = 4096
MAX_SEED = 2**31 - 1  # the seed range the app and the CLI accept (torch takes more; a range keeps links portable)


class RecurrentLM(Protocol):
    """Anything that maps (tokens, state) to (logits, state): the float model, or a backend's
    integer model (`BackendBase.step_fn`)."""

    def __call__(self, input_ids: torch.Tensor, state: Optional[list[torch.Tensor]] = None): ...


@dataclass
class GeneratedToken:
    """One generated token with what a viewer needs to explain it."""

    position: int  # 0 for the first generated token
    token_id: int
    text: str  # the characters this token adds to the decoded text (may be "" mid UTF-8 sequence)
    logits: torch.Tensor  # (vocab,) float logits the token was sampled from
    is_eos: bool = False  # the checkpoint's end-of-sequence token, which ended the run (it adds no text)


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 32
    temperature: float = 0.8
    top_k: int = 40  # 0 disables top-k
    seed: int = 0
    ignore_eos: bool = False  # go on past the end-of-sequence token (Hugging Face: stop there)

    def validate(self, vocab_size: int | None = None) -> None:
        """Refuse settings no run can use, saying which and why (`vocab_size` bounds top-k when known)."""
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise PromptError(f"tokens to generate must be between 1 and {MAX_NEW_TOKENS}, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise PromptError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k < 0:
            raise PromptError(f"top-k must be >= 0 (0 disables it), got {self.top_k}")
        if vocab_size is not None and self.top_k > vocab_size:
            raise PromptError(f"top-k must be at most the vocabulary size, {vocab_size:,} (0 disables it), got {self.top_k:,}")
        if not 0 <= self.seed <= MAX_SEED:
            raise PromptError(f"the seed must be between 0 and {MAX_SEED:,}, got {self.seed:,}")


def stopped_at_eos(tokens: list[GeneratedToken]) -> bool:
    """Whether a run ended on the checkpoint's end-of-sequence token (before its token limit, or at it)."""
    return bool(tokens) and tokens[-1].is_eos


def eos_note(tokenizer: Tokenizer, tokens: list[GeneratedToken], limit: int) -> str:
    """What a page or the CLI says about a run that stopped at EOS ("" for one that did not)."""
    if not stopped_at_eos(tokens):
        return ""
    eos = tokens[-1].token_id
    return (
        f"generation stopped at end-of-sequence ({tokenizer.id_to_token(eos) or '?'}, id {eos}) after {len(tokens)} of "
        f"{limit} tokens"
    )


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """Tokenize a prompt as the model reads it (with the checkpoint's BOS, if it uses one), refusing
    empty and oversized prompts with a message that says why."""
    if not prompt or not prompt.strip():
        raise PromptError("the prompt is empty: type some text for the model to continue")
    if not encode(tokenizer, prompt):
        raise PromptError("the prompt produced no tokens with this tokenizer")
    ids = encode_document(tokenizer, prompt)
    if len(ids) > MAX_PROMPT_TOKENS:
        raise PromptError(
            f"the prompt is {len(ids)} tokens long; the limit is {MAX_PROMPT_TOKENS}. Shorten it and retry."
        )
    return ids


# Prompt tokens per forward call while reading the prompt. The models are recurrent, so reading it in
# chunks gives the same result (bit for bit for the integer model) with a bounded peak of memory.
PREFILL_CHUNK = 256


def sample_next(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator) -> int:
    """Greedy at temperature 0; otherwise softmax(logits / T) restricted to the top-k, drawn with `generator`."""
    if settings.temperature == 0:
        return int(torch.argmax(logits).item())
    scaled = logits.double() / settings.temperature
    if 0 < settings.top_k < scaled.numel():
        kth = torch.topk(scaled, settings.top_k).values[-1]
        scaled = torch.where(scaled < kth, torch.full_like(scaled, float("-inf")), scaled)
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


@torch.no_grad()
def generate(
    model: RecurrentLM,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 32,
    temperature: float = 0.8,
    top_k: int = 40,
    seed: int = 0,
    ignore_eos: bool = False,
    eos_token_ids: Sequence[int] = (),
) -> Iterator[GeneratedToken]:
    """Stream generated tokens one at a time, carrying the recurrent state between them.

    A token in `eos_token_ids` ends the stream (it is yielded, flagged `is_eos`, with the text still
    held back by the decoder), unless `ignore_eos`; see the module docstring.
    """
    settings = SamplingSettings(max_new_tokens, temperature, top_k, seed, ignore_eos)
    settings.validate()
    prompt_ids = encode_prompt(tokenizer, prompt)
    generator = torch.Generator().manual_seed(seed)
    state = None
    for start in range(0, len(prompt_ids), PREFILL_CHUNK):  # in chunks: a long prompt's intermediates stay small
        logits, state = model(torch.tensor([prompt_ids[start : start + PREFILL_CHUNK]]), state)
    last = logits[0, -1]
    # Decoded in the prompt's context, so a leading space survives; a partial UTF-8 character is held
    # back until the token that completes it (the last token flushes whatever is left).
    decoder = IncrementalDecoder(tokenizer, prompt_ids)
    stop_ids = frozenset() if ignore_eos else frozenset(int(i) for i in eos_token_ids)
    for position in range(settings.max_new_tokens):
        token = sample_next(last, settings, generator)
        if token in stop_ids:
            yield GeneratedToken(position=position, token_id=token, text=decoder.flush(), logits=last.clone(), is_eos=True)
            return
        piece = decoder.push(token)
        if position == settings.max_new_tokens - 1:
            piece += decoder.flush()
        yield GeneratedToken(position=position, token_id=token, text=piece, logits=last.clone())
        logits, state = model(torch.tensor([[token]]), state)
        last = logits[0, -1]


def token_table(steps: list[GeneratedToken], tokenizer: Tokenizer, top: int = 5, first_token: int = 0) -> list[dict]:
    """One row per generated token: its text, its probability, and the model's top alternatives.

    `token` is the token's index counted from the start of the sequence the model read (pass the
    number of prompt tokens as `first_token`), the join key shared with every other table. `piece`
    is the tokenizer's raw vocabulary entry (byte-level BPE shows a space as "Ġ"), `text` the
    characters the token added to the decoded text.

    Probabilities are those of the untempered distribution (softmax of the logits), which is what
    the model believes, independent of the sampling settings.
    """
    rows = []
    for step in steps:
        probs = torch.softmax(step.logits.double(), dim=-1)
        values, ids = torch.topk(probs, min(top, probs.numel()))
        rows.append(
            {
                "token": first_token + step.position,
                "token_id": step.token_id,
                "piece": tokenizer.id_to_token(step.token_id),
                "text": step.text,
                "probability": float(probs[step.token_id]),
                "rank": int((probs > probs[step.token_id]).sum()) + 1,
                "top_alternatives": ", ".join(
                    f"{decode(tokenizer, [int(i)])!r} {float(v):.2f}" for v, i in zip(values, ids, strict=True)
                ),
            }
        )
    return rows
