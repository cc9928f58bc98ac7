"""Paths typed by a user: every one goes through `checked_path` before the file system is touched deeply.

Why a module of its own: each path box of a served app is an input anyone who reaches the port can
fill. `~nosuchuser/x` makes `Path.expanduser` raise RuntimeError, a 5,000-character path makes `stat`
raise OSError (name too long), `/dev/zero` or a FIFO is read forever, and on a shared server a path
must not let a visitor make the server read or write anywhere it can. `checked_path` turns each of
these into an `InspectorError` (a `CheckpointError` for checkpoints) that names the rule broken.

Two modes (`Access`):
- **local**: a single user's app (bound to 127.0.0.1, no `INSPECTOR_MODEL_ROOTS`) and the CLI. Any
  path the user can reach is accepted, but devices, FIFOs, directories where a file is expected,
  oversized files and overlong names are still refused with a message.
- **shared** (`Access.restricted`): the app listens beyond this machine (`server.address` not a
  loopback address, e.g. `make run HOST=0.0.0.0`) or `INSPECTOR_MODEL_ROOTS` is set. Checkpoints
  are read only under `INSPECTOR_MODEL_ROOTS` (directories separated by `os.pathsep`; none set: no
  local checkpoints at all) and the shipped sample models; what the app writes and reads back
  (sweeps, QuantConfig files) lies under the data root, `INSPECTOR_DATA_ROOT` (default: the
  project's `artifacts/`); a QuantConfig file may also come from a model root. Paths are resolved
  (symlinks followed, `..` removed) before the check, and the check comes before anything is
  looked at, so a refusal never says whether a file outside the roots exists or what it holds.

In both modes an existing non-empty output directory is written into only when the caller passes
`replace=True` (the user ticked "replace existing results" or equivalent).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import CheckpointError, InspectorError
from inspector.lm.catalog import SAMPLE_MODELS_DIR

ROOTS_VARIABLE = "INSPECTOR_MODEL_ROOTS"
DATA_ROOT_VARIABLE = "INSPECTOR_DATA_ROOT"
DEFAULT_DATA_ROOT = SAMPLE_MODELS_DIR.parent / "artifacts"
MAX_PATH_CHARS = 1024  # far above any real path; Linux refuses beyond 4,096 anyway
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux file systems, in bytes)
MAX_NAME_CHARS = MAX_NAME_BYTES  # the name tests and messages use
MAX_QUANT_FILE_BYTES = 64 * 1024  # a QuantConfig JSON is a few KB
MAX_RUN_JSON_BYTES = 1024 * 1024  # a traces directory's run.json also holds the prompt and the generated text


class PathError(InspectorError):
    """A typed path that is refused: the message names the rule, never what lies outside the roots."""


def model_roots() -> list[Path] | None:
    """The directories checkpoint paths must lie under, or None when unrestricted."""
    raw = os.environ.get(ROOTS_VARIABLE, "")
    roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    return roots or None


def data_root() -> Path:
    """Where the app writes (sweeps) and what it reads back: INSPECTOR_DATA_ROOT or the project's artifacts/."""
    raw = os.environ.get(DATA_ROOT_VARIABLE, "").strip()
    return Path(raw).expanduser().resolve() if raw else DEFAULT_DATA_ROOT.resolve()


@dataclass(frozen=True)
class Access:
    """Where typed paths may point. `restricted` False: anywhere (a local app, the CLI)."""

    restricted: bool
    model_roots: tuple[Path, ...] | None  # None: no model directories (only the sample models), when restricted
    data_root: Path

    @classmethod
    def local(cls) -> "Access":
        return cls(False, None, data_root())

    @classmethod
    def for_server(cls, listens_beyond_loopback: bool) -> "Access":
        """The app's mode: shared when it listens beyond this machine or INSPECTOR_MODEL_ROOTS is set."""
        roots = model_roots()
        return cls(listens_beyond_loopback or roots is not None, tuple(roots) if roots else None, data_root())


@dataclass(frozen=True)
class Use:
    """What a path box is for: its name in messages, which roots it may lie under, what must be there."""

    what: str  # e.g. "QuantConfig file"
    roots: tuple[str, ...]  # "models" (with the sample models) and/or "data"
    kind: str  # "dir": an existing directory; "file": a regular file; "quant": a file or a traces directory; "output"
    max_bytes: int | None = None  # "file"/"quant": refused beyond this size, before reading


CHECKPOINT = Use("checkpoint directory", ("models",), "dir")
QUANT_FILE = Use("QuantConfig file", ("data", "models"), "quant", MAX_QUANT_FILE_BYTES)
SWEEP_RESULTS = Use("sweep directory", ("data",), "dir")
SWEEP_OUTPUT = Use("output directory", ("data",), "output")
RESULT_FILE = Use("result file", ("data",), "file", MAX_QUANT_FILE_BYTES)


def _shown(typed: str) -> str:
    """The path as quoted back in a message: long ones shortened, so the message stays readable."""
    return typed if len(typed) <= 80 else f"{typed[:40]}…{typed[-20:]} ({len(typed):,} characters)"


def _error(use: Use, typed: str, problem: str) -> InspectorError:
    if use.kind == "dir" and use.roots == ("models",):
        return CheckpointError(_shown(typed), None, problem)
    return PathError(f"{use.what[0].upper()}{use.what[1:]} {_shown(typed)}: {problem}")


def _allowed(use: Use, access: Access) -> list[Path]:
    allowed: list[Path] = []
    if "models" in use.roots:
        allowed += [*(access.model_roots or ()), SAMPLE_MODELS_DIR.resolve()]
    if "data" in use.roots:
        allowed.append(access.data_root)
    return allowed


def _outside_message(use: Use, access: Access) -> str:
    if use.roots == ("models",):
        if access.model_roots is None:
            return (
                f"this server is shared, so local checkpoint paths are off; whoever runs it can allow directories with "
                f"{ROOTS_VARIABLE}=/path/to/models (several separated by '{os.pathsep}')"
            )
        listed = ", ".join(str(r) for r in access.model_roots)
        return f"outside the allowed model directories ({listed}; set by {ROOTS_VARIABLE})"
    places = [f"{access.data_root} (set by {DATA_ROOT_VARIABLE})"]
    if "models" in use.roots and access.model_roots:
        places.append(f"{', '.join(str(r) for r in access.model_roots)} (set by {ROOTS_VARIABLE})")
    return f"outside the directories this shared server allows: {'; '.join(places)}"


def _check_text(use: Use, text: str) -> None:
    if not text:
        raise _error(use, "(empty path)", f"type the path of the {use.what}")
    if "\x00" in text:
        raise _error(use, text, "a path cannot contain a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise _error(use, text, f"path too long (at most {MAX_PATH_CHARS:,} characters)")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in text.split(os.sep)):
        raise _error(use, text, f"a path component is longer than {MAX_NAME_BYTES} characters (bytes)")


def _expanded(use: Use, text: str, access: Access) -> Path:
    if text.startswith("~"):
        if access.restricted:
            raise _error(use, text, "'~' is not expanded on a shared server; type the full path")
        try:
            return Path(text).expanduser()
        except RuntimeError:  # "~user" for a user that does not exist
            user = text.split(os.sep, 1)[0]
            problem = f"no user {user[1:]!r} on this machine, so {user!r} has no home directory to expand to"
            raise _error(use, text, problem) from None
    return Path(text)


def checked_path(typed: str | Path, use: Use, access: Access, replace: bool = False) -> Path:
    """The path a user typed for `use`, expanded, resolved and checked; an `InspectorError` naming the rule otherwise.

    For "quant" uses a directory means its `run.json` (a traces directory), and that file is returned.
    For "output" uses the directory may not exist yet; an existing non-empty one needs `replace=True`.
    """
    text = str(typed).strip()
    _check_text(use, text)
    path = _expanded(use, text, access)
    try:
        resolved = path.resolve()  # follows every symlink and removes "..": the check sees the real place
    except (OSError, RuntimeError):  # a symlink loop
        raise _error(use, text, "cannot be resolved (a symbolic link loop?)") from None
    if access.restricted and not any(resolved.is_relative_to(root) for root in _allowed(use, access)):
        raise _error(use, text, _outside_message(use, access))
    try:
        return _check_target(use, text, resolved, replace)
    except OSError as exc:
        raise _error(use, text, f"cannot be opened: {exc.strerror or exc}") from None


def _check_target(use: Use, text: str, resolved: Path, replace: bool) -> Path:
    info = _stat(resolved)
    if use.kind == "output":
        if info is None:
            return resolved
        if not stat.S_ISDIR(info.st_mode):
            raise _error(use, text, "not a directory (something else is at this path)")
        if any(os.scandir(resolved)) and not replace:
            raise _error(
                use, text,
                "this directory already holds files; tick 'Replace existing results' to write into it "
                "(files of the same name are replaced) or choose a new directory",
            )
        return resolved
    if use.kind == "dir":
        if info is None:
            raise _error(use, text, "not a directory (nothing exists at this path)")
        if not stat.S_ISDIR(info.st_mode):
            raise _error(use, text, "not a directory (a file is at this path; name the folder that holds it)")
        os.listdir(resolved)  # unreadable directories fail here, not halfway through
        return resolved
    limit = use.max_bytes
    if use.kind == "quant" and info is not None and stat.S_ISDIR(info.st_mode):
        resolved, limit = resolved / "run.json", MAX_RUN_JSON_BYTES  # a traces directory records its QuantConfig
        info = _stat(resolved)
        if info is None:
            raise _error(use, text, "a directory without run.json (not a traces directory of `inspector run`)")
    if info is None:
        raise _error(use, text, "cannot read it: no file at this path")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        raise _error(use, text, f"not a regular file ({kind} is at this path)")
    if limit is not None and info.st_size > limit:
        raise _error(use, text, f"too large ({info.st_size:,} bytes; a {use.what} is at most {limit:,} bytes)")
    return resolved


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def read_limited(path: Path, limit: int, what: str = "file") -> bytes:
    """At most `limit` bytes of a regular file, or a PathError: checked again on the open file, so a
    file swapped for a FIFO or grown after `checked_path` is still refused, never read without end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise PathError(f"cannot read {what} {_shown(str(path))}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathError(f"{what} {_shown(str(path))}: not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise PathError(f"{what} {_shown(str(path))}: too large (more than {limit:,} bytes)")
    return data


def checkpoint_directory(typed: str | Path, roots: list[Path] | None = None, shared: bool = False) -> Path:
    """The checkpoint directory a user named, expanded and checked; a `CheckpointError` saying why otherwise.

    `roots`: accept only paths inside these directories (defaults to `model_roots()`).
    `shared`: the app is reachable from other machines; without roots, refuse every path.
    Returns the path as expanded (not resolved), so names shown later are the ones the user typed.
    """
    roots = model_roots() if roots is None else roots
    access = Access(shared or roots is not None, tuple(roots) if roots else None, data_root())
    text = str(typed).strip()
    checked_path(text, CHECKPOINT, access)
    return Path(text).expanduser()
