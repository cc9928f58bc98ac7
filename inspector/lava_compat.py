"""Import-time compatibility patch that lets lava-nc 0.10.0 run on Python 3.11.

Why: lava-nc 0.10.0 declares Python <3.11. On 3.11, `dataclasses` rejects unhashable instances as
field defaults, and `lava/magma/compiler/var_model.py` declares `CoreEncoder`, `ChipEncoder` and
`AxonEncoder` with fields like `x: ByteEncoder = ByteEncoder()`. Importing any part of Lava's
compiler then fails with "mutable default ... use default_factory".

A second, smaller problem: `lava/magma/runtime/message_infrastructure/multiprocessing.py` calls
`multiprocessing.set_start_method('fork')` at import, which raises "context has already been set"
when anything in the process (a test runner, a web server) touched the default context first.
Lava needs 'fork' either way, so the call is made with `force=True`.

What: `install()` puts a meta-path finder in front of the import system that serves those modules
from their own source with the fixes applied, compiled fresh (never from a stale `.pyc`). The
installed package is not modified, so a fresh `pip install` needs nothing done by hand. Call
`install()` before importing anything from `lava`; it is idempotent.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import re
import sys
from types import CodeType

PATCHED_MODULE = "lava.magma.compiler.var_model"
MULTIPROCESSING_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"
_DEFAULT_PATTERN = re.compile(r"=\s*ByteEncoder\(\)")
_IMPORT_PATTERN = re.compile(r"^from dataclasses import ", re.MULTILINE)


def patch_var_model_source(source: str) -> str:
    """Rewrite the unhashable dataclass defaults into default factories."""
    patched = _DEFAULT_PATTERN.sub("= field(default_factory=ByteEncoder)", source)
    if patched != source:
        # Extend the module's own dataclasses import (a new first line would precede __future__).
        patched = _IMPORT_PATTERN.sub("from dataclasses import field, ", patched, count=1)
    return patched


def patch_multiprocessing_source(source: str) -> str:
    """Make Lava's import-time start-method choice tolerant of an already chosen context."""
    return source.replace("mp.set_start_method('fork')", "mp.set_start_method('fork', force=True)")


PATCHES = {PATCHED_MODULE: patch_var_model_source, MULTIPROCESSING_MODULE: patch_multiprocessing_source}


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        source = self.get_source(fullname) or ""
        return compile(PATCHES[fullname](source), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _PatchedLoader(fullname, spec.origin)
        return spec


def install() -> None:
    """Activate the patch for the rest of the process (no-op if already active or not needed)."""
    if sys.version_info < (3, 11):
        return
    if any(isinstance(finder, _VarModelFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _VarModelFinder())


def lava_available() -> tuple[bool, str]:
    """Whether lava-nc imports (after the patch); the reason if not, for the UI and CLI."""
    install()
    try:
        from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
    except Exception as exc:  # ImportError, or anything Lava raises at import on this Python
        return False, f"lava-nc is not importable: {exc}"
    return True, "lava-nc 0.10.0 fixed-point simulation available"
