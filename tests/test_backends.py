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


def _backend_choices() -> list[str]:
    from inspector.cli import build_parser

    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices["run"]._actions if a.dest == "backend")
    return list(run.choices)


def test_the_cli_offers_exactly_the_registered_backends():
    assert _backend_choices() == [entry.key for entry in backends.REGISTRY] == list(backends.BACKEND_KEYS)
    from inspector.cli import build_parser

    helps = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for entry in backends.REGISTRY:
        assert entry.label.split(" (")[0] in " ".join(helps.split()), entry.label


def test_registry_entries_say_everything_the_ui_shows():
    """One entry per backend: a unique key and label, an availability check that gives a reason, and
    for backends that make runs wait, the text shown while waiting."""
    keys = [entry.key for entry in backends.REGISTRY]
    labels = [entry.label for entry in backends.REGISTRY]
    assert len(set(keys)) == len(keys) and len(set(labels)) == len(labels)
    for entry in backends.REGISTRY:
        status = backends.status_of(entry.key)
        assert status.entry is entry and status.label == entry.label and status.reason
        if entry.waits_for:
            assert entry.waits_for in entry.wait_text(3) and "position 3" in entry.wait_text(3)
    assert backends.status_of("emulator").available
    with pytest.raises(ValueError, match="no backend"):
        backends.status_of("gpu")


def test_asking_about_the_emulator_imports_no_lava():
    code = (
        "import sys; from inspector.backends.base import require_backend; require_backend('emulator'); "
        "print(any(m == 'lava' or m.startswith('lava.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
