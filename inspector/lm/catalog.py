"""Where models come from: the shipped sample models, or a checkpoint directory the user names."""

from __future__ import annotations

from pathlib import Path

from inspector.errors import InspectorError

SAMPLE_MODELS_DIR = Path(__file__).resolve().parents[2] / "sample_models"
DEFAULT_SAMPLE_MODEL = "shakespeare"


def sample_models() -> dict[str, Path]:
    """Shipped sample models by name (each a directory with a config.json), default first."""
    found = {p.name: p for p in sorted(SAMPLE_MODELS_DIR.iterdir()) if (p / "config.json").is_file()}
    if DEFAULT_SAMPLE_MODEL in found:
        found = {DEFAULT_SAMPLE_MODEL: found.pop(DEFAULT_SAMPLE_MODEL), **found}
    return found


def checkpoint_fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a directory's files: a cache key that changes when the files do."""
    try:
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file()))
    except (OSError, RuntimeError):  # unreadable, too long, ~unknownuser: the loader says why
        return ()


def validation_text(loaded) -> str:
    """The held-out split of the corpus a sample model's card names (what `quality` and `sweep` read)."""
    card = loaded.card or {}
    corpus = SAMPLE_MODELS_DIR / "corpora" / card.get("corpus", "")
    if not card.get("corpus") or not corpus.is_file():
        raise InspectorError(
            f"{loaded.directory}: no held-out text known for this model; give one (--text on the command line) "
            f"(only sample models whose card names a corpus in {corpus.parent} have one)"
        )

    return split_corpus(corpus.read_text(encoding="utf-8"), card.get("val_fraction", 0.1))[1]

def split_corpus(text: str, val_fraction: float) -> tuple[str, str]:
    """Hold out the tail of the corpus, cut at a line break so no line straddles the split."""
    cut = int(len(text) * (1 - val_fraction))
    newline = text.find("\n", cut)
    cut = newline + 1 if newline != -1 else cut
    return text[:cut], text[cut:]

