"""One backend interface: every backend is an BackendBase made through one registry, and the
modules import each other in one direction only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inspector.backends import base as backends


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_backends_module_imports_no_backend():
    """inspector.backends.base names its implementations; it imports neither the emulator engine nor Lava."""
    loaded = _modules_after_import("inspector.backends.base")
    assert "inspector.backends.emulator" not in loaded
    lava_modules = ("lava", "inspector.backends.lava")
    assert not any(name in lava_modules or name.startswith(tuple(m + "." for m in lava_modules)) for name in loaded)


def test_every_registered_backend_implements_the_interface():
    from inspector.backends.emulator import Emulator
    from inspector.backends.lava.backend import LavaBackend, LoihiHardwareBackend

    assert [entry.key for entry in backends.REGISTRY] == [status.key for status in backends.backend_statuses()]
    classes = {entry.key: backends.backend_class(entry.key) for entry in backends.REGISTRY}
    assert classes == {"emulator": Emulator, "lava": LavaBackend, "loihi2": LoihiHardwareBackend}
    for cls in classes.values():
        assert issubclass(cls, backends.BackendBase)
        assert cls.step_fn is not backends.BackendBase.step_fn  # each computes tokens its own way
    assert not issubclass(LavaBackend, Emulator)
    with pytest.raises(ValueError, match="no backend"):
        backends.backend_class("gpu")
