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


# Memory of a Lava graph, measured: a 3.9 M-parameter sample model's graph (4 layers, 38 processes)
# takes 0.66 GB; a random-weight MMfreeLM-370M graph (24 layers, about 200 processes) took about
# 10 GB and ran at 43 s per token, its first token after 90 s (compile). Estimated generously:
BYTES_PER_LAVA_PROCESS = 20 * 2**20  # a forked Python with torch and Lava loaded
BYTES_PER_WEIGHT = 24  # Dense weights as Lava holds them, plus the copies made while compiling


def lava_processes(layers: int) -> int:
    """Per layer a LayerCore, six Dense and an Extractor; plus Injector, FinalNorm, its Extractor,
    Lava's runtime service and shared-memory manager, and our worker."""
    return 8 * layers + 6


def lava_memory_estimate(parameters: int, layers: int) -> int:
    """Bytes a Lava graph of this model needs, roughly (see the measurements above)."""
    return lava_processes(layers) * BYTES_PER_LAVA_PROCESS + parameters * BYTES_PER_WEIGHT


def available_memory() -> int | None:
    """MemAvailable in bytes (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def require_lava_memory(parameters: int, layers: int) -> None:
    """Refuse, saying why, to start a Lava graph that would not fit in the memory available now
    (called when the graph is about to start, after any previous graph has been closed)."""
    need, free = lava_memory_estimate(parameters, layers), available_memory()
    if free is not None and need > free:
        raise BackendUnavailableError(
            f"the Lava graph of this model ({lava_processes(layers)} Lava processes and "
            f"{parameters / 1e6:.0f} M weights) would need about {need / 2**30:.1f} GB of memory and "
            f"{free / 2**30:.1f} GB is available. (A 370M model's graph took about 10 GB and 43 s per "
            "token.) The emulator computes the same bits."
        )


def require_backend(key: str) -> BackendStatus:
    """The backend's status if it can run here; otherwise an error that says what is missing."""
    status = status_of(key)
    if not status.available:
        raise BackendUnavailableError(f"backend {status.label!r} is unavailable: {status.reason}")
    return status
