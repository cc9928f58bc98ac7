"""Which backends can run the integer model here, and if not, exactly why.

- `emulator`: the vectorized bit-accurate emulator in `inspector.emulator` (always available).
- `lava`: Lava's fixed-point simulator (`Loihi2SimCfg(select_tag="fixed_pt")`) running the model as
  a Lava process graph.
- `loihi2`: Loihi 2 itself through `Loihi2HwCfg`, which needs Intel's lava-loihi extension and a
  board (or the INRC cloud).
Detection happens once at start-up so the UI and CLI can say what is missing before a run.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from inspector.errors import BackendUnavailableError
from inspector.lava_compat import lava_available


@dataclass(frozen=True)
class BackendStatus:
    key: str
    label: str
    available: bool
    reason: str


LAVA_LOIHI_HELP = (
    "Intel's lava-loihi extension is not installed. It is not on PyPI: Intel distributes it to members of "
    "the Intel Neuromorphic Research Community (INRC, intel.com/neuromorphic), together with access to "
    "Loihi 2 systems (a local board or the INRC cloud through SLURM). Install it into .venv on such a host."
)


@functools.lru_cache(maxsize=1)
def backend_statuses() -> tuple[BackendStatus, ...]:
    emulator = BackendStatus("emulator", "Emulator (bit-accurate)", True, "vectorized integer emulator of Loihi 2 neuro-cores")
    ok, why = lava_available()
    lava = BackendStatus(
        "lava", "Lava simulation", ok,
        "a Lava process graph in Loihi2SimCfg(select_tag='fixed_pt'), bit-exact with the emulator; "
        "about 10 s to start, then about 2 tokens/s on a sample model"
        if ok else why,
    )
    hardware_ok, hardware_why = _hardware_check(ok)
    loihi = BackendStatus("loihi2", "Loihi 2 hardware", hardware_ok, hardware_why)
    return emulator, lava, loihi


HOST_VARIABLES = ("SLURM", "LOIHI_GEN", "NXSDKHOST", "PARTITION", "BOARD")


def _hardware_check(lava_ok: bool) -> tuple[bool, str]:
    """Whether Loihi2HwCfg can reach a Loihi 2 system from here; otherwise exactly what is missing."""
    if not lava_ok:
        return False, "lava-nc is not importable, so Loihi2HwCfg cannot be used"
    try:
        from lava.utils.loihi import is_installed
    except Exception as exc:  # pragma: no cover - lava layout changed
        return False, f"cannot check for lava-loihi: {exc}"
    if not is_installed():
        return False, LAVA_LOIHI_HELP
    if not any(os.environ.get(var) for var in HOST_VARIABLES):
        return False, (
            "lava-loihi is installed but no Loihi 2 host is configured: none of "
            f"{', '.join(HOST_VARIABLES)} is set (set up SLURM or an Ethernet host as lava.utils.loihi describes)"
        )
    return True, (
        "the Lava process graph through Loihi2HwCfg: Dense synapses on the neuro-cores, LayerCore and FinalNorm "
        "as Python models on the host CPU (they have no microcode models yet); untested by us, no Loihi 2 system "
        "was available"
    )


def status_of(key: str) -> BackendStatus:
    for status in backend_statuses():
        if status.key == key:
            return status
    raise KeyError(key)


# Measured: a random-weight MMfreeLM-370M graph (24 layers, about 200 Lava processes) used more
# than 20 GB before its first token on a 24 GB machine, and was stopped; a 3.9 M-parameter sample
# model's graph uses 0.7 GB.
LAVA_MAX_PARAMETERS = 50_000_000


def status_for_model(key: str, parameters: int) -> BackendStatus:
    """The backend's status for a model of this size (a Lava graph grows with the model)."""
    status = status_of(key)
    if status.available and key in ("lava", "loihi2") and parameters > LAVA_MAX_PARAMETERS:
        return BackendStatus(status.key, status.label, False, (
            f"this model has {parameters / 1e6:.0f} M parameters and the Lava graph is limited to "
            f"{LAVA_MAX_PARAMETERS / 1e6:.0f} M here: every layer becomes seven Lava processes holding their "
            "own copies of its state and weights, and a 370M model's graph needed more than 20 GB of memory "
            "before its first token. The emulator computes the same bits."
        ))
    return status


def require_backend(key: str, parameters: int | None = None) -> BackendStatus:
    """The backend's status if it can run here (for a model of this size); otherwise an error that
    says what is missing."""
    status = status_of(key) if parameters is None else status_for_model(key, parameters)
    if not status.available:
        raise BackendUnavailableError(f"backend {status.label!r} is unavailable: {status.reason}")
    return status
