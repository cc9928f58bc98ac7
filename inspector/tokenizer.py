"""Tokenizers: a `tokenizer.json` (Hugging Face `tokenizers` format) read from disk, nothing else.

MMfreeLM checkpoints ship a `tokenizer.json`; our sample models ship a byte-level BPE trained by
`inspector.train`. A sentencepiece-only directory (`tokenizer.model`) is reported as unsupported
rather than half-loaded.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from inspector.errors import TokenizerError

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2: the HGRNBit defaults for bos (1) and eos (2)


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load `directory/tokenizer.json`, with a specific message for every way it can be wrong."""
    path = Path(directory) / TOKENIZER_FILE
    if not path.exists():
        if (Path(directory) / "tokenizer.model").exists():
            raise TokenizerError(
                f"{path}: not found; only a sentencepiece tokenizer.model is present, which is not supported. "
                "Convert it to tokenizer.json (e.g. with the `tokenizers` or `transformers` package) and retry."
            )
        raise TokenizerError(f"{path}: file not found (a checkpoint directory needs tokenizer.json)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a plain Exception for every parse problem
        raise TokenizerError(f"{path}: not a tokenizer the `tokenizers` package can read ({exc})") from None


def train_bpe_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    """A byte-level BPE: every string round-trips exactly, which keeps bits-per-character honest."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tokenizer


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)
