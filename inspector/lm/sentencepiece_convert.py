"""Convert a sentencepiece BPE `tokenizer.model` into a `tokenizers.Tokenizer`, verified on load.

Why convert here: the `tokenizers` package cannot read a `.model` file, and a checkpoint that ships
only one (as Llama-family releases once did) should load without a detour through another library.
The conversion rebuilds a byte-fallback BPE from the model's pieces: the vocabulary is the pieces in
id order, and the merges are every split of a piece into two pieces, ranked by the merged piece's
score (sentencepiece merges the highest-scoring pair first). Normalization follows the model's
normalizer spec (dummy prefix, spaces as "▁", a precompiled character map if it has one).

Why verify: a conversion that is right for Llama's tokenizer may not be for every sentencepiece
model (for example one that collapses repeated whitespace). After converting, the same probe text is
encoded with sentencepiece itself and with the converted tokenizer; any difference in ids refuses the
tokenizer with a message, rather than running a model on ids it was not trained with.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

from inspector.errors import TokenizerError

SPACE_MARKER = "\u2581"  # "▁", sentencepiece's visible space
# Covers spaces (single, double, leading), digits, punctuation, newlines, accents, CJK and emoji.
VERIFY_TEXT = (
    "Hello the king, said 12 mice.  Two  spaces, a tab\tand\nnew lines.\n"
    " leading space; café naïve façade; 東京は日本の首都です。안녕하세요! 🙂🚀 Ünïcödé — end"
)
# sentencepiece_model.proto: TrainerSpec.ModelType and SentencePiece.Type
MODEL_TYPE_BPE = 2
PIECE_NORMAL, PIECE_UNKNOWN, PIECE_CONTROL, PIECE_USER_DEFINED, PIECE_UNUSED, PIECE_BYTE = 1, 2, 3, 4, 5, 6


def _read_model_proto(path: Path):
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as exc:  # pragma: no cover - sentencepiece is in requirements.txt
        raise TokenizerError(f"{path}: reading tokenizer.model needs the sentencepiece package ({exc})") from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, or others on garbage
        raise TokenizerError(f"{path}: not a sentencepiece model ({exc})") from None
    if not proto.pieces:
        raise TokenizerError(f"{path}: not a sentencepiece model (no pieces)")
    return proto


def _merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """Every (left, right) whose concatenation is a piece, highest-scoring merged piece first."""
    ranked: list[tuple[float, int, int, str, str]] = []
    for piece in vocab:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-scores[piece], vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def convert_sentencepiece(path: Path) -> Tokenizer:
    """A `tokenizers.Tokenizer` that gives the same ids as sentencepiece on `path`, or a TokenizerError."""
    path = Path(path)
    proto = _read_model_proto(path)
    if proto.trainer_spec.model_type != MODEL_TYPE_BPE:
        raise TokenizerError(
            f"{path}: only BPE sentencepiece models can be converted (this one is of type "
            f"{proto.trainer_spec.model_type}, e.g. unigram); provide a tokenizer.json instead"
        )
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    scores = {piece.piece: piece.score for piece in proto.pieces}
    mergeable = {
        p.piece: vocab[p.piece] for p in proto.pieces if p.type in (PIECE_NORMAL, PIECE_USER_DEFINED)
    }
    unk = next((p.piece for p in proto.pieces if p.type == PIECE_UNKNOWN), None)
    bpe = models.BPE(
        vocab=vocab,
        merges=_merges(mergeable, scores),
        unk_token=unk,
        fuse_unk=True,
        byte_fallback=bool(proto.trainer_spec.byte_fallback),
    )
    tokenizer = Tokenizer(bpe)
    steps = []
    if proto.normalizer_spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE_MARKER))
    steps.append(normalizers.Replace(" ", SPACE_MARKER))
    tokenizer.normalizer = normalizers.Sequence(steps)
    decode_steps = [decoders.Replace(SPACE_MARKER, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        decode_steps.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(decode_steps)
    specials = [p.piece for p in proto.pieces if p.type in (PIECE_CONTROL, PIECE_UNKNOWN)]
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    _verify(path, tokenizer)
    return tokenizer


def _verify(path: Path, tokenizer: Tokenizer) -> None:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    for line in (VERIFY_TEXT, *VERIFY_TEXT.split("\n")):
        expected = processor.encode(line)
        got = tokenizer.encode(line, add_special_tokens=False).ids
        if got != expected:
            raise TokenizerError(
                f"{path}: converting this sentencepiece model does not reproduce its token ids "
                f"(on {line[:40]!r}: sentencepiece {expected[:12]}..., converted {got[:12]}...). Provide the "
                "checkpoint's tokenizer.json, e.g. from `transformers`' AutoTokenizer.from_pretrained(dir)"
                ".save_pretrained(dir) on a machine with transformers installed"
            )
