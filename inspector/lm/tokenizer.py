"""Tokenizers: a `tokenizer.json` (Hugging Face `tokenizers` format) read from disk, its BOS policy,
and decoding in context.

MMfreeLM checkpoints ship a Llama-style tokenizer (byte-fallback BPE, `<s>` = 1, `</s>` = 2) whose
`tokenizer_config.json` says `add_bos_token: true`: the model was trained with `<s>` before every
document, and runs without it compute something else. Our sample models ship a byte-level BPE
trained by `inspector.lm.train` without a BOS. The policy is therefore read from the checkpoint, the way
Hugging Face's fast Llama tokenizer does, and stored in the tokenizer's own post-processor, so that
`encode_document` (prompts, calibration and perplexity texts) adds exactly what the checkpoint asks
for, on every backend, in the app and the CLI alike:
- `tokenizer_config.json` with `add_bos_token` / `add_eos_token`: followed (BOS from its `bos_token`,
  else `special_tokens_map.json`, else `config.json`'s `bos_token_id`);
- otherwise the post-processor inside `tokenizer.json`, as written (none for the sample models);
- a sentencepiece `tokenizer.model` without `tokenizer.json` is converted on load
  (`inspector.lm.sentencepiece_convert`) and gets a BOS, as `LlamaTokenizer` does by default.

Text is decoded in context (`IncrementalDecoder`): a SentencePiece token carries its leading space
as "▁" and the decoder drops the first one of a string, so decoding a generated token alone loses
it ("Hello" + " the" shown as "Hellothe"), and a character split over byte-fallback tokens must not
show as U+FFFD while its last byte is still to come.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from inspector.errors import TokenizerError

TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2: the HGRNBit defaults for bos (1) and eos (2)
DECODE_CONTEXT_TOKENS = 6  # tokens of left context kept when decoding incrementally
REPLACEMENT_CHAR = "\ufffd"


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: must hold a JSON object")
    return data


def _token_content(value: Any) -> Optional[str]:
    """`bos_token` is written either as a string or as an AddedToken dict with a `content` key."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _special_id(tokenizer: Tokenizer, directory: Path, which: str, config_id: Optional[int]) -> int:
    """The id of `bos_token` / `eos_token`: from tokenizer_config.json, special_tokens_map.json or config.json."""
    for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
        data = _read_json(directory / name) or {}
        content = _token_content(data.get(which))
        if content is not None:
            token_id = tokenizer.token_to_id(content)
            if token_id is None:
                raise TokenizerError(f"{directory / name}: {which} {content!r} is not in the tokenizer's vocabulary")
            if config_id is not None and token_id != config_id:
                raise TokenizerError(
                    f"{directory / name}: {which} {content!r} has id {token_id}, but config.json says "
                    f"{which}_id = {config_id}; the checkpoint files disagree"
                )
            return token_id
    if config_id is None or tokenizer.id_to_token(config_id) is None:
        raise TokenizerError(f"{directory}: the tokenizer asks for a {which} but no file names one that exists")
    return config_id


def _apply_special_token_policy(
    tokenizer: Tokenizer, directory: Path, bos_token_id: Optional[int], eos_token_id: Optional[int], default_bos: bool
) -> None:
    """Set the post-processor from tokenizer_config.json's add_bos_token / add_eos_token, if it says."""
    config = _read_json(directory / TOKENIZER_CONFIG_FILE) or {}
    if "add_bos_token" not in config and "add_eos_token" not in config and not default_bos:
        return  # keep what tokenizer.json says
    add_bos = bool(config.get("add_bos_token", default_bos))
    add_eos = bool(config.get("add_eos_token", False))
    single, special = "$A", []
    if add_bos:
        bos = _special_id(tokenizer, directory, "bos_token", bos_token_id)
        single = f"{tokenizer.id_to_token(bos)} {single}"
        special.append((tokenizer.id_to_token(bos), bos))
    if add_eos:
        eos = _special_id(tokenizer, directory, "eos_token", eos_token_id)
        single = f"{single} {tokenizer.id_to_token(eos)}"
        special.append((tokenizer.id_to_token(eos), eos))
    if not special:
        tokenizer.post_processor = None
        return
    pair = f"{single} {single.replace('$A', '$B')}"
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)


def load_tokenizer(
    directory: Path, bos_token_id: Optional[int] = None, eos_token_id: Optional[int] = None
) -> Tokenizer:
    """Load a checkpoint's tokenizer with its BOS policy, with a specific message for every way it can be wrong.

    `bos_token_id` / `eos_token_id` are config.json's, used when no tokenizer file names the token.
    """
    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    default_bos = False
    if path.exists():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a plain Exception for every parse problem
            raise TokenizerError(f"{path}: not a tokenizer the `tokenizers` package can read ({exc})") from None
    elif (directory / SENTENCEPIECE_FILE).exists():
        from inspector.lm.sentencepiece_convert import convert_sentencepiece

        tokenizer = convert_sentencepiece(directory / SENTENCEPIECE_FILE)
        default_bos = True  # LlamaTokenizer's default add_bos_token
    else:
        raise TokenizerError(
            f"{path}: file not found (a checkpoint directory needs tokenizer.json or a sentencepiece tokenizer.model)"
        )
    _apply_special_token_policy(tokenizer, directory, bos_token_id, eos_token_id, default_bos)
    return tokenizer


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
    """The tokens of `text` alone, without any special token (for pieces of a longer text)."""
    return tokenizer.encode(text, add_special_tokens=False).ids


def encode_document(tokenizer: Tokenizer, text: str) -> list[int]:
    """The tokens of `text` as a whole input to the model: with the BOS the checkpoint asks for."""
    return tokenizer.encode(text, add_special_tokens=True).ids


def special_token_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """Ids of the tokenizer's special tokens (`<s>`, `</s>`, `<unk>`, ...), shown as such in token tables."""
    return frozenset(i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


class IncrementalDecoder:
    """Decode a token stream in context, one token at a time.

    Each step decodes a short window that starts a few tokens back, and emits what the new token adds
    to the window's text. The window keeps the leading-space markers of SentencePiece tokens right,
    and a token that ends inside a multi-byte UTF-8 character (a trailing U+FFFD) emits nothing until
    the token that completes it arrives. Special tokens at the start of the context (the BOS) are left
    out of the window, so they do not print.
    """

    def __init__(self, tokenizer: Tokenizer, context_ids: list[int] | tuple[int, ...] = ()):
        self.tokenizer = tokenizer
        specials = special_token_ids(tokenizer)
        context = list(context_ids)
        while context and context[0] in specials:
            context.pop(0)
        self.ids = context
        self.prefix_offset = 0
        self._advance()

    def push(self, token_id: int) -> str:
        """The text `token_id` adds ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        prefix = decode(self.tokenizer, self.ids[self.prefix_offset : self.read_offset])
        full = decode(self.tokenizer, self.ids[self.prefix_offset :])
        if full.endswith(REPLACEMENT_CHAR):
            # An incomplete character. (A byte-fallback decoder may then also turn the complete
            # characters of the same run of byte tokens into U+FFFD, so nothing of it is final yet.)
            return ""
        if len(full) <= len(prefix):
            return ""
        piece = full[len(prefix) :] if full.startswith(prefix) else full[len(_common_prefix(prefix, full)) :]
        self._advance()
        return piece

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the end shows as U+FFFD)."""
        prefix = decode(self.tokenizer, self.ids[self.prefix_offset : self.read_offset])
        full = decode(self.tokenizer, self.ids[self.prefix_offset :])
        self._advance()
        return full[len(prefix) :] if full.startswith(prefix) else full

    def _advance(self) -> None:
        """Mark everything so far as emitted and start the next window a few tokens back.

        The window must not start inside a multi-byte character: byte-fallback decoders turn a whole
        run of byte tokens into U+FFFD when it begins with an orphan continuation byte, which would
        hide the character being completed. So the start moves back while the window decodes to a
        leading U+FFFD.
        """
        self.read_offset = len(self.ids)
        start = max(0, self.read_offset - DECODE_CONTEXT_TOKENS)
        while start > 0 and decode(self.tokenizer, self.ids[start : self.read_offset]).startswith(REPLACEMENT_CHAR):
            start -= 1
        self.prefix_offset = start


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def decode_continuation(tokenizer: Tokenizer, context_ids: list[int], ids: list[int]) -> str:
    """The text `ids` add after `context_ids` (e.g. a generated continuation after its prompt)."""
    decoder = IncrementalDecoder(tokenizer, context_ids)
    return "".join(decoder.push(i) for i in ids) + decoder.flush()


def token_texts(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Per token, the text it adds in context; their concatenation is the decoded sequence.

    A token inside a multi-byte character gets "" and the token that completes it the whole character;
    special tokens get their literal text (e.g. "<s>").
    """
    specials = special_token_ids(tokenizer)
    texts: list[str] = []
    decoder = IncrementalDecoder(tokenizer)
    for position, token_id in enumerate(ids):
        if token_id in specials:
            texts.append(decode(tokenizer, [token_id]))
            decoder = IncrementalDecoder(tokenizer, [i for i in ids[:position + 1] if i not in specials])
            continue
        texts.append(decoder.push(token_id))
    if texts:
        texts[-1] += decoder.flush()
    return texts
