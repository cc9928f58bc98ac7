"""The core mapper: which neurons and synapses of each layer live on which Loihi 2 neuro-core and chip.

Each layer is split into fused neuron groups (one neuron program per group, the "layer fusion" of
the paper), declared in `inspector.schema` (LAYER_GROUPS, in data-flow order: norm_attn, proj_ifg,
mlgru, proj_o, norm_mlp, proj_gate, glu, proj_down, residual; docs/integer-model.md prints them with
their sizes, inputs and readers), and `final_norm` (D) after the last layer.

A group's neurons are packed greedily, in order, onto as few cores as the per-core limits allow.
By default groups never share a core, so every core runs one program (what the emulator and the
Lava graph assume). `share_cores=True` is a what-if for the Hardware page: the groups of one layer
are packed one after the other onto the same run of cores, so a core may hold the tail of one group
and the head of the next (two neuron programs on one core); the table then has one row per (core,
group) segment.

Two chip layouts (`LAYOUTS`): **packed** fills every chip's cores before the next chip, so a block may
straddle two chips; **one-block-per-chip** is what the paper deployed (370M: 24 blocks on 24 chips):
each layer starts on a chip of its own (a block that needs more cores than a chip has takes the next
chips too; the per-core limits apply inside a chip either way), the final norm follows the last
block. The LM head (`lm_head_group`, a ternary BitLinear of vocab x hidden) stays on the host unless
asked for; on chip it starts a chip of its own in the one-block-per-chip layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from inspector import schema as S
from inspector.chip.limits import HardwareConfig
from inspector.errors import InspectorError
from inspector.lm.config import HGRNBitConfig

# Expected share of nonzero ternary weights for Gaussian-like weights under absmean quantization:
# P(|z| >= 0.5 * E|z|) = P(|z| >= 0.399) ~ 0.69. Used only when no real weights are given.
DEFAULT_TERNARY_DENSITY = 0.69

GROUP_ORDER = S.GROUP_ORDER
PACKED, ONE_BLOCK_PER_CHIP = "packed", "one-block-per-chip"
LAYOUTS = (PACKED, ONE_BLOCK_PER_CHIP)
LM_HEAD = S.LM_HEAD


class MappingError(InspectorError):
    pass


@dataclass(frozen=True)
class NeuronGroup:
    layer: int  # -1 for the final norm
    name: str
    synapses: np.ndarray  # stored synapses per neuron (int64)
    fan_in: int  # distinct input axons the group listens to

    @property
    def neurons(self) -> int:
        return int(self.synapses.shape[0])


@dataclass
class CoreMap:
    """One row per core: layer, group, neuron range [start, end), chip, memory use."""

    table: pl.DataFrame
    hardware: HardwareConfig
    groups: list[NeuronGroup]

    @property
    def cores(self) -> int:
        return self.table["core"].n_unique() if self.table.height else 0

    layout: str = PACKED

    @property
    def chips(self) -> int:
        return self.table["chip"].n_unique() if self.table.height else 0

    def chips_per_block(self) -> dict[int, int]:
        """layer -> chips its cores occupy (a block larger than a chip spans several)."""
        t = self.table.filter(pl.col("layer") >= 0)
        return dict(t.group_by("layer").agg(pl.col("chip").n_unique()).sort("layer").iter_rows())

    def oversized_blocks(self) -> str | None:
        """In the one-block-per-chip layout, a sentence when a block does not fit one chip (else None)."""
        if self.layout != ONE_BLOCK_PER_CHIP:
            return None
        spans = {layer: n for layer, n in self.chips_per_block().items() if n > 1}
        if not spans:
            return None
        cores = self.table.filter(pl.col("layer") == next(iter(spans)))["core"].n_unique()
        return (
            f"{len(spans)} block(s) do not fit one chip (layer {next(iter(spans))} needs {cores:,} cores, a chip has "
            f"{self.hardware.cores_per_chip}): each takes {max(spans.values())} chips; the per-core limits still apply "
            "inside every chip."
        )

    def summary(self) -> dict[str, float]:
        t = self.table
        per_core = t.group_by("core").agg(pl.col("memory_bytes").sum())["memory_bytes"]  # segments of a shared core add up
        return {
            "cores": self.cores,
            "chips": self.chips,
            "neurons": int(t["neurons"].sum()),
            "synapses": int(t["synapses"].sum()),
            "max_memory_bytes_per_core": int(per_core.max()),
            "mean_memory_bytes_per_core": float(per_core.mean()),
        }


def _row_nonzeros(weight: torch.Tensor) -> np.ndarray:
    """Stored synapses per output neuron: the nonzero weights of each row.

    numpy's count_nonzero on the int8 ternary matrix, without a bool temporary: several times faster
    than torch's `(weight != 0).sum(dim=1)` (about a second at 370M on two threads), same counts."""
    if weight.dtype == torch.int8 and weight.device.type == "cpu":
        return np.count_nonzero(weight.numpy(), axis=1).astype(np.int64)
    return (weight != 0).sum(dim=1).cpu().numpy().astype(np.int64)


def dims(config: HGRNBitConfig) -> S.Dims:
    """The model dimensions the schema's size symbols refer to."""
    return S.Dims(config.hidden_size, config.mixer_size, config.mlp_intermediate_size, config.vocab_size)


def neuron_group(
    config: HGRNBitConfig, layer: int, group: S.Group, weights: dict[str, torch.Tensor] | None = None,
    density: float = DEFAULT_TERNARY_DENSITY,
) -> NeuronGroup:
    """One schema group of one layer as a NeuronGroup: a projection group's synapses are its ternary
    weights (counted from real weights when given), any other group's neurons sum `inputs` messages."""
    size = S.size_of(group.size, dims(config))
    if not group.synapses:
        return NeuronGroup(layer, group.name, np.full(size, group.inputs, dtype=np.int64), group.inputs * size)
    parts = []  # the projections of one group share their input, so one fan-in
    for name in group.synapses:
        projection = S.PROJECTION_OF[name]
        fan_in = S.size_of(projection.inputs, dims(config))
        if weights is not None:
            parts.append(_row_nonzeros(weights[name]))
        else:
            parts.append(np.full(S.size_of(projection.outputs, dims(config)), int(round(density * fan_in)), dtype=np.int64))
    return NeuronGroup(layer, group.name, np.concatenate(parts), fan_in)


def layer_groups(
    config: HGRNBitConfig, layer: int, weights: dict[str, torch.Tensor] | None = None, density: float = DEFAULT_TERNARY_DENSITY
) -> list[NeuronGroup]:
    """The fused neuron groups of one layer (`inspector.schema.LAYER_GROUPS`); synapse counts from
    real ternary weights when given."""
    return [neuron_group(config, layer, group, weights, density) for group in S.LAYER_GROUPS]


def _pack(group: NeuronGroup, hw: HardwareConfig) -> list[tuple[int, int, int]]:
    """Greedy contiguous packing: [(start, end, synapses)] per core."""
    bits = group.synapses * hw.bits_per_synapse
    capacity_bits = min(hw.synapse_memory_bytes, hw.core_sram_bytes - hw.bytes_per_neuron) * 8
    if group.fan_in > hw.max_fan_in_per_core:
        raise MappingError(
            f"layer {group.layer} {group.name}: fan-in {group.fan_in} exceeds {hw.max_fan_in_per_core} axons per core"
        )
    if group.neurons and bits.max() > capacity_bits:
        raise MappingError(
            f"layer {group.layer} {group.name}: one neuron needs {int(bits.max()) // 8} bytes of synapses, "
            f"more than a core holds ({capacity_bits // 8} bytes)"
        )
    # Prefix sums make "the longest run of neurons from `start` that fits" a binary search:
    # synapse bits must fit the synapse memory, and ceil(bits / 8) + neurons * bytes_per_neuron
    # must fit the SRAM, which for integer byte counts is bits + 8 * bytes_per_neuron * neurons <= 8 * SRAM.
    cum = np.concatenate([[0], np.cumsum(bits)])
    cum_total = cum + 8 * hw.bytes_per_neuron * np.arange(group.neurons + 1)
    cores, start = [], 0
    while start < group.neurons:
        by_synapses = int(np.searchsorted(cum, cum[start] + 8 * hw.synapse_memory_bytes, side="right")) - 1
        by_sram = int(np.searchsorted(cum_total, cum_total[start] + 8 * hw.core_sram_bytes, side="right")) - 1
        end = max(start + 1, min(by_synapses, by_sram, start + hw.max_neurons_per_core, group.neurons))
        cores.append((start, end, int(group.synapses[start:end].sum())))
        start = end
    return cores


def _segments(groups: list[NeuronGroup], hw: HardwareConfig, share_cores: bool) -> list[tuple[NeuronGroup, int, int, int, int]]:
    """(group, core, start, end, synapses) for every piece of every group, cores numbered from 0."""
    pieces: list[tuple[NeuronGroup, int, int, int, int]] = []
    next_core = 0
    if not share_cores:
        for group in groups:
            for start, end, count in _pack(group, hw):
                pieces.append((group, next_core, start, end, count))
                next_core += 1
        return pieces
    layers: dict[int, list[NeuronGroup]] = {}
    for group in groups:
        layers.setdefault(group.layer, []).append(group)
    for members in layers.values():
        for group in members:
            _pack(group, hw)  # the per-group checks (fan-in, one neuron per core) still apply
        joined = NeuronGroup(
            members[0].layer, "+".join(g.name for g in members), np.concatenate([g.synapses for g in members]), 0,
        )
        offsets = np.cumsum([0] + [g.neurons for g in members])
        for start, end, _ in _pack(joined, hw):
            for group, lo, hi in zip(members, offsets[:-1], offsets[1:], strict=True):
                a, b = max(start, lo), min(end, hi)
                if a < b:
                    pieces.append((group, next_core, int(a - lo), int(b - lo), int(group.synapses[a - lo : b - lo].sum())))
            next_core += 1
    return pieces


# Which groups read a group's outputs, as (layer offset, group name): declared in the schema.
CONSUMERS: dict[str, tuple[tuple[int, str], ...]] = {g.name: g.consumers for g in (*S.LAYER_GROUPS, S.FINAL_GROUP)}


def readers_of(layer: int, name: str, layers: int) -> list[tuple[int, str]]:
    """The (layer, group)s that read the outputs of one group of a model with `layers` layers: what
    the last layer sends to a next layer goes to the final norm instead."""
    readers = [(layer + offset, reader) for offset, reader in CONSUMERS.get(name, ())]
    inside = [(at, reader) for at, reader in readers if at < layers]
    return inside if len(inside) == len(readers) else inside + [(-1, S.FINAL_GROUP.name)]


def fan_out(pieces: list[tuple[NeuronGroup, int, int, int, int]]) -> dict[tuple[int, str], int]:
    """Per (layer, group): the most cores one of its neurons sends a message to. A neuron reaches
    every core that holds a neuron reading it, so this is bounded by all cores of the groups that
    read the group: the bound is what is counted (dense projections do reach nearly all of them)."""
    cores: dict[tuple[int, str], set[int]] = {}
    for group, core, *_ in pieces:
        cores.setdefault((group.layer, group.name), set()).add(core)
    layers = 1 + max((layer for layer, _ in cores), default=-1)
    return {
        (layer, name): len(set().union(*(cores.get(key, set()) for key in readers_of(layer, name, layers))))
        for layer, name in cores
    }


def _check_fan_out(pieces: list[tuple[NeuronGroup, int, int, int, int]], hw: HardwareConfig) -> None:
    layers = 1 + max((p[0].layer for p in pieces), default=-1)
    for (layer, name), reached in fan_out(pieces).items():
        if reached > hw.max_fan_out_per_neuron:
            readers = ", ".join(r for _, r in readers_of(layer, name, layers))
            raise MappingError(
                f"layer {layer} {name}: a neuron may send to {reached} cores ({readers}), "
                f"more than max_fan_out_per_neuron = {hw.max_fan_out_per_neuron}"
            )


def _one_block_per_chip(pieces: list[tuple[NeuronGroup, int, int, int, int]], hw: HardwareConfig) -> list:
    """Renumber cores so that every layer (and the LM head) starts on a fresh chip; chip = core // cores_per_chip."""
    out, shift, last_core, last_block = [], 0, -1, None
    for group, core, start, end, count in pieces:
        block = LM_HEAD if group.name == LM_HEAD else group.layer
        starts_block = block != last_block and (block == LM_HEAD or group.layer >= 0)
        if starts_block and last_core >= 0 and core != last_core:
            next_free = last_core + shift + 1
            shift = -(-next_free // hw.cores_per_chip) * hw.cores_per_chip - core
        last_block, last_core = block, core
        out.append((group, core + shift, start, end, count))
    return out


def map_groups(
    groups: list[NeuronGroup], hw: HardwareConfig, share_cores: bool = False, layout: str = PACKED,
) -> CoreMap:
    if layout not in LAYOUTS:
        raise MappingError(f"unknown layout {layout!r}; choose {' or '.join(LAYOUTS)}")
    pieces = _segments(groups, hw, share_cores)
    if layout == ONE_BLOCK_PER_CHIP:
        pieces = _one_block_per_chip(pieces, hw)
    _check_fan_out(pieces, hw)
    core, start_a, end_a, syn_a = (np.asarray([p[k] for p in pieces], dtype=np.int64) for k in (1, 2, 3, 4))
    neurons = end_a - start_a
    table = pl.DataFrame(
        {
            "core": core,
            "chip": core // hw.cores_per_chip,
            "layer": np.asarray([p[0].layer for p in pieces], dtype=np.int64),
            "group": pl.Series([p[0].name for p in pieces], dtype=pl.Utf8),
            "start": start_a,
            "end": end_a,
            "neurons": neurons,
            "synapses": syn_a,
            "memory_bytes": -(-(syn_a * hw.bits_per_synapse) // 8) + neurons * hw.bytes_per_neuron,
        }
    )
    return CoreMap(table, hw, groups, layout)


def lm_head_group(config: HGRNBitConfig, density: float = DEFAULT_TERNARY_DENSITY) -> NeuronGroup:
    """The LM head as a neuron group: one neuron per vocabulary entry, a ternary BitLinear over the
    final norm's outputs (synapses from the typical ternary density: the measured runs keep it on the host)."""
    per_neuron = int(round(density * config.hidden_size))
    return NeuronGroup(-1, LM_HEAD, np.full(config.vocab_size, per_neuron, dtype=np.int64), config.hidden_size)


def model_groups(config: HGRNBitConfig, weights_by_layer: list[dict[str, torch.Tensor]] | None = None) -> list[NeuronGroup]:
    groups: list[NeuronGroup] = []
    for layer in range(config.num_hidden_layers):
        weights = weights_by_layer[layer] if weights_by_layer is not None else None
        groups.extend(layer_groups(config, layer, weights))
    groups.append(neuron_group(config, -1, S.FINAL_GROUP))
    return groups


def map_model(
    config: HGRNBitConfig,
    hw: HardwareConfig | None = None,
    weights_by_layer: list[dict[str, torch.Tensor]] | None = None,
    share_cores: bool = False,
    layout: str = PACKED,
    lm_head_on_chip: bool = False,
) -> CoreMap:
    """Map a whole model; without weights, synapse counts assume the typical ternary density."""
    groups = model_groups(config, weights_by_layer) + ([lm_head_group(config)] if lm_head_on_chip else [])
    return map_groups(groups, hw or HardwareConfig(), share_cores, layout)
