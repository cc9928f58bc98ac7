"""Loihi 2 hardware detection on a machine where Intel's lava-loihi is installed.

lava-loihi is not on PyPI, so this machine does not have it. Lava decides whether it is installed by
asking the import system for `lava.utils.loihi2_profiler` (`lava.utils.loihi.is_installed`); a
finder placed first on `sys.meta_path` that answers for that module makes this machine look like an
INRC host to that check, and to ours, without faking our own code.
"""

from __future__ import annotations

import importlib.machinery
import sys

import pytest

from inspector.backends import base as backends
from inspector.backends.base import HOST_VARIABLES, status_of

PROFILER = "lava.utils.loihi2_profiler"  # the module lava.utils.loihi.is_installed looks for


class LavaLoihiFinder:
    """Finds the lava-loihi module (and nothing else), as an installed lava-loihi would."""

    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, loader=None) if name == PROFILER else None


@pytest.fixture()
def lava_loihi_installed(monkeypatch):
    from inspector.lava_compat import install

    install()
    monkeypatch.setattr(sys, "meta_path", [LavaLoihiFinder(), *sys.meta_path])
    for variable in HOST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    backends.status_of.cache_clear()
    yield monkeypatch
    backends.status_of.cache_clear()


def test_the_simulated_install_is_what_lava_sees(lava_loihi_installed):
    from lava.utils.loihi import is_installed

    assert is_installed()


def test_lava_loihi_without_a_configured_host_says_so(lava_loihi_installed):
    status = status_of("loihi2")
    assert not status.available
    assert "lava-loihi is installed but no Loihi 2 host is configured" in status.reason
    assert all(variable in status.reason for variable in HOST_VARIABLES)


@pytest.mark.parametrize("variable", HOST_VARIABLES)
def test_lava_loihi_with_a_configured_host_is_available(lava_loihi_installed, variable):
    lava_loihi_installed.setenv(variable, "1")
    status = status_of("loihi2")
    assert status.available
    assert "Loihi2HwCfg" in status.reason
    assert status_of("lava").available and status_of("emulator").available

