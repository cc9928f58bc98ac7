"""How much memory a model and a run need, estimated from `config.json` alone, and how much there is.

Why before anything is built: a config that claims a 40 GB tensor (or a 2.7B model on a small
machine) must be refused with a message, not discovered by the allocator taking the server down.
The figures follow what the loader keeps resident (see `inspector.lm.checkpoint` and
`inspector.lm.ternary`): one int8 byte per ternary weight, float32 for the embedding, the norms and the
lower bounds, plus the largest transient of loading (one tensor as read plus its float64 row blocks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import InspectorError
from inspector.lm.config import HGRNBitConfig


class MemoryBudgetError(InspectorError):
    """A model or run that would not fit in the memory available: says how much it needs and has."""


@dataclass(frozen=True)
class ModelFootprint:
    ternary_weights: int  # count of ternary weights (one byte each)
    float_values: int  # count of float32 values (embedding, norms, lower bounds)
    largest_tensor: int  # values in the largest single tensor (a transient while loading)

    @property
    def resident_bytes(self) -> int:
        """Bytes the loaded model keeps: the int8 store, the float32 tensors, |W| for synaptic-op probes."""
        return 2 * self.ternary_weights + 4 * self.float_values

    @property
    def loading_bytes(self) -> int:
        """Peak extra bytes while loading: one tensor in float32 plus float64 row blocks of it."""
        return 4 * self.largest_tensor + 8 * min(self.largest_tensor, 4096 * 4096)

    @property
    def parameters(self) -> int:
        return self.ternary_weights + self.float_values


def model_footprint(config: HGRNBitConfig) -> ModelFootprint:
    """Counts from the config: the six projections per layer and the LM head are ternary."""
    h, m, inner, v, n = (
        config.hidden_size,
        config.mixer_size,
        config.mlp_intermediate_size,
        config.vocab_size,
        config.num_hidden_layers,
    )
    per_layer_ternary = 3 * h * m + m * h + 2 * inner * h + inner * h
    per_layer_float = 2 * h + 3 * h + m + m + h + inner  # block norms, BitLinear norms, g_norm
    ternary = n * per_layer_ternary + v * h
    floats = v * h + n * per_layer_float + n * h * int(config.use_lower_bound) + h + h
    largest = max(v * h, 2 * inner * h)
    return ModelFootprint(ternary, floats, largest)


def available_bytes() -> int:
    """Memory this process may still use: MemAvailable, or the cgroup limit's headroom if smaller."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            available = min(available, int(limit) - usage)
    return max(available, 0)


def _gb(n: int) -> str:
    return f"{n / 1024**3:.1f} GB"


def check_model_fits(config: HGRNBitConfig, source: str, available: int | None = None) -> ModelFootprint:
    """Refuse, naming both figures, a model whose resident size and loading transient exceed what is free."""
    footprint = model_footprint(config)
    needed = footprint.resident_bytes + footprint.loading_bytes
    free = available_bytes() if available is None else available
    if needed > free:
        raise MemoryBudgetError(
            f"{source}: this model ({footprint.parameters / 1e9:.2f} B parameters: hidden_size {config.hidden_size}, "
            f"{config.num_hidden_layers} layers, vocab {config.vocab_size}) needs about {_gb(needed)} to load and run, "
            f"but only {_gb(free)} is available. Close other models or runs, or use a machine with more memory."
        )
    return footprint


def peak_resident_bytes() -> int:
    """This process's peak resident memory since it started its program.

    Read from VmHWM in /proc/self/status, the high-water mark of the process's own address space. Not
    `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries that figure across fork and exec, so a process
    started by a large parent reports the parent's size at the fork as its own peak (a benchmark's
    analysis subprocess did: 3.05 GB for a 1.6 GB run). `ru_maxrss` is the fallback off Linux.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
