"""Checkpoint paths typed by a user: validated before anything touches the file system deeply.

Why a module of its own: the path box of a served app is an input anyone who reaches the port can
fill. `~nosuchuser/x` makes `Path.expanduser` raise RuntimeError, a 5,000-character path makes
`stat` raise OSError (name too long), and on a shared server a path must not let a visitor make
the server open any directory it can read. `checkpoint_directory` turns each of these into a
`CheckpointError` with a specific message, for the app and the CLI alike.

Roots: when `INSPECTOR_MODEL_ROOTS` is set (directories separated by `os.pathsep`), checkpoint
paths are accepted only inside them. A shared server (`make run HOST=0.0.0.0`) that has no roots
set accepts no local checkpoint paths at all: only the shipped sample models (which are always
accepted, roots or not).
"""

from __future__ import annotations

import os
from pathlib import Path

from inspector.catalog import SAMPLE_MODELS_DIR
from inspector.errors import CheckpointError

ROOTS_VARIABLE = "INSPECTOR_MODEL_ROOTS"
MAX_PATH_CHARS = 1024  # far above any real checkpoint path; Linux refuses beyond 4,096 anyway
MAX_NAME_CHARS = 255  # one path component (NAME_MAX on Linux file systems)


def model_roots() -> list[Path] | None:
    """The directories checkpoint paths must lie under, or None when unrestricted."""
    raw = os.environ.get(ROOTS_VARIABLE, "")
    roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    return roots or None


def _shown(typed: str) -> str:
    """The path as quoted back in a message: long ones shortened, so the message stays readable."""
    return typed if len(typed) <= 80 else f"{typed[:40]}…{typed[-20:]} ({len(typed):,} characters)"


def checkpoint_directory(typed: str | Path, roots: list[Path] | None = None, shared: bool = False) -> Path:
    """The directory a user named, expanded and checked; a `CheckpointError` saying why otherwise.

    `roots`: accept only paths inside these directories (defaults to `model_roots()`).
    `shared`: the app is reachable from other machines; without roots, refuse every path.
    """
    text = str(typed).strip()
    roots = model_roots() if roots is None else roots
    if not text:
        raise CheckpointError("(empty path)", None, "type the path of a checkpoint directory")
    if "\x00" in text:
        raise CheckpointError(_shown(text), None, "a path cannot contain a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise CheckpointError(_shown(text), None, f"path too long (at most {MAX_PATH_CHARS:,} characters)")
    long_part = next((part for part in text.split(os.sep) if len(part) > MAX_NAME_CHARS), None)
    if long_part is not None:
        raise CheckpointError(_shown(text), None, f"a path component is longer than {MAX_NAME_CHARS} characters")
    if shared and roots is None:
        raise CheckpointError(
            _shown(text), None,
            f"this server is shared, so local checkpoint paths are off; whoever runs it can allow directories with "
            f"{ROOTS_VARIABLE}=/path/to/models (several separated by '{os.pathsep}')",
        )
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~user" for a user that does not exist
        user = text.split(os.sep, 1)[0]
        raise CheckpointError(
            _shown(text), None, f"no user {user[1:]!r} on this machine, so {user!r} has no home directory to expand to",
        ) from None
    try:
        resolved = path.resolve()
        allowed = [*roots, SAMPLE_MODELS_DIR.resolve()] if roots is not None else None  # the shipped models always load
        if allowed is not None and not any(resolved.is_relative_to(root) for root in allowed):
            allowed = ", ".join(str(r) for r in roots)
            raise CheckpointError(
                _shown(text), None, f"outside the allowed model directories ({allowed}; set by {ROOTS_VARIABLE})",
            )
        if not resolved.exists():
            raise CheckpointError(_shown(text), None, "not a directory (nothing exists at this path)")
        if not resolved.is_dir():
            raise CheckpointError(_shown(text), None, "not a directory (a file is at this path; name the folder that holds it)")
        os.listdir(resolved)  # unreadable directories fail here, not halfway through loading
    except OSError as exc:
        raise CheckpointError(_shown(text), None, f"cannot be opened: {exc.strerror or exc}") from None
    return path
