"""Import-time compatibility patch that lets lava-nc 0.10.0 run on Python 3.11.

Why: lava-nc 0.10.0 declares Python <3.11. On 3.11, `dataclasses` rejects unhashable instances as
field defaults, and `lava/magma/compiler/var_model.py` declares `CoreEncoder`, `ChipEncoder` and
`AxonEncoder` with fields like `x: ByteEncoder = ByteEncoder()`. Importing any part of Lava's
compiler then fails with "mutable default ... use default_factory".

What: `install()` puts a meta-path finder in front of the import system that serves that one module
from its own source with each `= ByteEncoder()` default rewritten to
`= field(default_factory=ByteEncoder)`, compiled fresh (never from a stale `.pyc`). The installed
package is not modified, so a fresh `pip install` needs nothing done by hand. Call `install()`
before importing anything from `lava`; it is idempotent.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import re
import sys
from types import CodeType

PATCHED_MODULE = "lava.magma.compiler.var_model"
_DEFAULT_PATTERN = re.compile(r"=\s*ByteEncoder\(\)")
_IMPORT_PATTERN = re.compile(r"^from dataclasses import ", re.MULTILINE)


def patch_var_model_source(source: str) -> str:
    """Rewrite the unhashable dataclass defaults into default factories."""
    patched = _DEFAULT_PATTERN.sub("= field(default_factory=ByteEncoder)", source)
    if patched != source:
        # Extend the module's own dataclasses import (a new first line would precede __future__).
        patched = _IMPORT_PATTERN.sub("from dataclasses import field, ", patched, count=1)
    return patched


class _PatchedVarModelLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        source = self.get_source(fullname) or ""
        return compile(patch_var_model_source(source), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _PatchedVarModelLoader(fullname, spec.origin)
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
