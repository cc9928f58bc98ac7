"""Loihi 2 resource limits used by the core mapper, each with where the figure comes from.

Published (Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology brief,
2021; Davies et al. 2021): 128 neuro-cores per chip, up to 1 million neurons and 120 million
synapses per chip, 192 KB of SRAM per neuro-core (synapses, neuron state and programs share it),
24-bit neuron state and graded-spike payload in Lava's bit-accurate models.

Not published per core, so these are stated assumptions (change them in `HardwareConfig`):
- `max_neurons_per_core` = 8192: 1M neurons / 128 cores;
- `synapse_memory_bytes` = 128 KiB of the 192 KB for synapses, the rest for state and programs;
- `bits_per_synapse` = 8: the paper stores 8-bit weights; zero (ternary 0) weights are not stored;
- `bytes_per_neuron` = 12: four 24-bit state variables per fused neuron program;
- `max_fan_in_per_core` = 65536 input axons and `max_fan_out_per_neuron` = 4096 destination cores
  are generous routing bounds: the mapper checks them (fan-out as an upper bound, every core of the
  groups that read a neuron's output), but our models never approach them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import polars as pl

from inspector.errors import InspectorError
from inspector.overrides import replace_known


class HardwareConfigError(InspectorError):
    pass


BRIEF = "Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021"
HARDWARE_SOURCES = {
    "cores_per_chip": BRIEF + ": 128 neuro-cores per chip",
    "max_neurons_per_core": "assumption: up to 1 million neurons per chip (" + BRIEF + ") / 128 cores",
    "core_sram_bytes": BRIEF + ": 192 KB of SRAM per neuro-core",
    "synapse_memory_bytes": "assumption: 128 KiB of the 192 KB for synapses, the rest for state and programs",
    "bits_per_synapse": "Abreu et al., arXiv 2503.18002: weights stored as 8 bits; zero ternary weights are not stored",
    "bytes_per_neuron": "assumption: four 24-bit state variables per fused neuron program",
    "max_fan_in_per_core": "assumption: a generous routing bound (checked, never reached by these models)",
    "max_fan_out_per_neuron": "assumption: a generous routing bound (checked, never reached by these models)",
}


@dataclass(frozen=True)
class HardwareConfig:
    cores_per_chip: int = 128
    max_neurons_per_core: int = 8192
    core_sram_bytes: int = 192 * 1024
    synapse_memory_bytes: int = 128 * 1024
    bits_per_synapse: int = 8
    bytes_per_neuron: int = 12
    max_fan_in_per_core: int = 65536
    max_fan_out_per_neuron: int = 4096

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise HardwareConfigError(f"HardwareConfig.{field.name} must be a positive integer, got {value!r}")
        if self.synapse_memory_bytes > self.core_sram_bytes:
            raise HardwareConfigError("synapse_memory_bytes cannot exceed core_sram_bytes")
        if self.bytes_per_neuron * self.max_neurons_per_core > self.core_sram_bytes:
            raise HardwareConfigError("the neuron state of a full core would not fit in its SRAM")

    def with_overrides(self, overrides: dict[str, Any]) -> "HardwareConfig":
        return replace_known(self, overrides, HardwareConfigError)

    def table(self) -> pl.DataFrame:
        """Every limit with its source; a value that differs from the default says so."""
        default = HardwareConfig()
        names = [f.name for f in dataclasses.fields(self)]
        return pl.DataFrame(
            {
                "limit": names,
                "value": [getattr(self, n) for n in names],
                "source": [
                    HARDWARE_SOURCES[n] if getattr(self, n) == getattr(default, n) else "set by you (what-if)" for n in names
                ],
            }
        )
