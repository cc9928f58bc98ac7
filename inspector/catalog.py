"""Where models come from: the shipped sample models, or a checkpoint directory the user names."""

from __future__ import annotations

from pathlib import Path

SAMPLE_MODELS_DIR = Path(__file__).resolve().parents[1] / "sample_models"
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
