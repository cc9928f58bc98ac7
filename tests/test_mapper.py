"""The core mapper never exceeds a core limit and places every neuron exactly once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.chip.limits import HardwareConfig, HardwareConfigError
from inspector.chip.mapper import GROUP_ORDER, MappingError, _row_nonzeros, map_model
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig


def cores_of(core_map, layer: int, group: str) -> pl.DataFrame:
    """The core-map rows of one neuron group, in neuron order."""
    return core_map.table.filter((pl.col("layer") == layer) & (pl.col("group") == group)).sort("start")


def check_limits(core_map, hw: HardwareConfig):
    t = core_map.table
    assert (t["neurons"] <= hw.max_neurons_per_core).all()
    assert ((t["synapses"] * hw.bits_per_synapse / 8).ceil() <= hw.synapse_memory_bytes).all()
    assert (t["memory_bytes"] <= hw.core_sram_bytes).all()
    assert (t["chip"] == t["core"] // hw.cores_per_chip).all()
    # every group is covered exactly once, contiguously
    for group in core_map.groups:
        rows = cores_of(core_map, group.layer, group.name)
        starts, ends = rows["start"].to_list(), rows["end"].to_list()
        assert starts[0] == 0 and ends[-1] == group.neurons
        assert starts[1:] == ends[:-1]
        assert int(rows["synapses"].sum()) == int(group.synapses.sum())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hidden=st.integers(8, 700),
    layers=st.integers(1, 3),
    ratio=st.integers(1, 4),
    neurons=st.integers(16, 9000),
    synapse_kib=st.integers(4, 160),
    bits=st.sampled_from([2, 4, 8, 16]),
    cores_per_chip=st.integers(1, 128),
)
def test_mapper_respects_limits(hidden, layers, ratio, neurons, synapse_kib, bits, cores_per_chip):
    hw = HardwareConfig(
        cores_per_chip=cores_per_chip,
        max_neurons_per_core=neurons,
        synapse_memory_bytes=synapse_kib * 1024,
        core_sram_bytes=max(synapse_kib * 1024, neurons * 12),
        bits_per_synapse=bits,
    )
    config = HGRNBitConfig(hidden_size=hidden, num_hidden_layers=layers, hidden_ratio=ratio, vocab_size=64)
    try:
        core_map = map_model(config, hw)
    except MappingError as exc:  # only legitimate when a single neuron cannot fit a core
        assert "one neuron needs" in str(exc) or "fan-in" in str(exc)
        return
    check_limits(core_map, hw)


@pytest.mark.parametrize("name", list(PUBLISHED_CONFIGS))
def test_published_configs_map(name):
    hw = HardwareConfig()
    core_map = map_model(HGRNBitConfig(**PUBLISHED_CONFIGS[name]), hw)
    check_limits(core_map, hw)
    assert core_map.chips >= 1
    groups = core_map.table.filter(core_map.table["layer"] == 0)["group"].unique(maintain_order=True).to_list()
    assert groups == list(GROUP_ORDER)


def test_too_big_neuron_is_a_clear_error():
    hw = HardwareConfig(synapse_memory_bytes=64, core_sram_bytes=65536, max_neurons_per_core=16)
    with pytest.raises(MappingError, match="one neuron needs"):
        map_model(HGRNBitConfig(hidden_size=256, num_hidden_layers=1, vocab_size=64), hw)


def test_fan_out_counts_the_cores_of_every_reader_and_is_checked():
    """Hidden 256 at 256 neurons per core: proj_ifg takes 3 cores, proj_gate 6, glu 3, proj_down 2,
    every other group 1. norm_mlp feeds proj_gate and the final residual add (6 + 1 cores); a
    layer's residual feeds the next layer's norm_attn and norm_mlp (2), the last one the final norm."""
    from inspector.chip.mapper import _segments, fan_out

    config = HGRNBitConfig(hidden_size=256, num_hidden_layers=2, vocab_size=64)
    hw = HardwareConfig(max_neurons_per_core=256, max_fan_out_per_neuron=7)
    core_map = map_model(config, hw)
    per_layer = {"norm_attn": 3, "proj_ifg": 1, "mlgru": 1, "proj_o": 1, "norm_mlp": 7, "proj_gate": 3, "glu": 2,
                 "proj_down": 1}
    want = {(layer, g): n for layer in (0, 1) for g, n in per_layer.items()}
    want |= {(0, "residual"): 2, (1, "residual"): 1, (-1, "final_norm"): 0}
    assert fan_out(_segments(core_map.groups, hw, share_cores=False)) == want
    with pytest.raises(MappingError, match=r"layer 0 norm_mlp: a neuron may send to 7 cores \(proj_gate, residual\)"):
        map_model(config, HardwareConfig(max_neurons_per_core=256, max_fan_out_per_neuron=6))


def test_bad_hardware_config():
    with pytest.raises(HardwareConfigError):
        HardwareConfig(max_neurons_per_core=0)
    with pytest.raises(HardwareConfigError, match="unknown"):
        HardwareConfig().with_overrides({"cores": 3})


def test_real_weights_drive_synapse_counts(tiny_checkpoint):
    """Each synapse group stores exactly the nonzero ternary weights of its projections, counted
    here from the weights themselves (per output neuron, in the group's neuron order)."""
    from inspector.backends.emulator import Emulator
    from inspector.lm.checkpoint import load_checkpoint

    emu = Emulator(load_checkpoint(tiny_checkpoint))
    groups = {
        "proj_ifg": ("i_proj", "f_proj", "g_proj"), "proj_o": ("o_proj",), "proj_gate": ("gate_proj",),
        "proj_down": ("down_proj",),
    }
    for idx, layer in enumerate(emu.params.layers):
        for group, names in groups.items():
            per_neuron = np.concatenate([(getattr(layer, n).weight != 0).sum(dim=1).numpy() for n in names])
            rows = cores_of(emu.core_map, idx, group)
            for start, end, synapses in rows.select("start", "end", "synapses").iter_rows():
                assert synapses == int(per_neuron[start:end].sum()), (idx, group, start)
            assert rows["end"][-1] == len(per_neuron)
    # and the counts are the real ones, not the typical density the mapper assumes without weights
    assumed = map_model(emu.loaded.config, emu.hardware).table
    assert not assumed["synapses"].equals(emu.core_map.table["synapses"])


# The table of the published sizes on the default hardware ("Core maps" in docs/chip-estimate.md): pinned,
# so a mapper change that moves them fails here and the document is updated with it.
README_CORE_MAPS = {  # model: (neuro-cores, Loihi 2 chips, stored synapses in millions)
    "MMfreeLM-370M": (1801, 15, 213),
    "MMfreeLM-1.3B": (6745, 53, 851),
    "MMfreeLM-2.7B": (13633, 107, 1752),
}


def test_the_pinned_core_map_figures_are_the_readmes():
    """The "Core maps" table of docs/chip-estimate.md, parsed: the pins above and the document cannot drift apart."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "chip-estimate.md").read_text(encoding="utf-8")
    lines = doc.splitlines()
    start = lines.index("| model | neuro-cores | Loihi 2 chips | stored synapses |") + 2
    table = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name, cores, chips, synapses = (cell.strip() for cell in line.strip("|").split("|"))
        if name.startswith("MMfreeLM-"):
            table[name] = (int(cores.replace(",", "")), int(chips), int(synapses.removesuffix(" M").replace(",", "")))
    assert table == README_CORE_MAPS


@pytest.mark.parametrize("name", sorted(README_CORE_MAPS))
def test_published_core_map_figures_match_the_readme(name):
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[name])
    summary = map_model(config, HardwareConfig()).summary()
    cores, chips, synapses_m = README_CORE_MAPS[name]
    assert (summary["cores"], summary["chips"], round(summary["synapses"] / 1e6)) == (cores, chips, synapses_m)
    D, M, I = config.hidden_size, config.mixer_size, config.mlp_intermediate_size  # noqa: E741 (I: the MLP width, as in the equations)
    assert summary["neurons"] == config.num_hidden_layers * (5 * D + 4 * M + 3 * I) + D


@pytest.mark.parametrize("name", ["shakespeare", "tinystories"])
def test_sample_model_core_map_matches_the_readme(name):
    """docs/chip-estimate.md: "sample models (4 x 256) | 53 | 1 | about 2.3 M" (real ternary weights)."""
    from inspector.backends.emulator import Emulator
    from inspector.lm.catalog import SAMPLE_MODELS_DIR
    from inspector.lm.checkpoint import load_checkpoint

    summary = Emulator(load_checkpoint(SAMPLE_MODELS_DIR / name)).core_map.summary()
    assert (summary["cores"], summary["chips"]) == (53, 1)
    assert round(summary["synapses"] / 1e5) / 10 == 2.3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hidden=st.integers(8, 300), neurons=st.integers(16, 3000), synapse_kib=st.integers(2, 64), bits=st.sampled_from([1, 2, 8]))
def test_shared_cores_respect_limits_and_never_need_more_cores(hidden, neurons, synapse_kib, bits):
    hw = HardwareConfig(
        max_neurons_per_core=neurons, synapse_memory_bytes=synapse_kib * 1024,
        core_sram_bytes=max(synapse_kib * 1024, neurons * 12) + 64, bits_per_synapse=bits,
    )
    config = HGRNBitConfig(hidden_size=hidden, num_hidden_layers=2, vocab_size=64)
    try:
        separate = map_model(config, hw)
    except MappingError:
        return
    shared = map_model(config, hw, share_cores=True)
    t = shared.table
    per_core = t.group_by("core").agg(
        pl.col("neurons").sum(), pl.col("synapses").sum(), pl.col("memory_bytes").sum(), pl.col("layer").n_unique(),
    )
    assert (per_core["neurons"] <= hw.max_neurons_per_core).all()
    assert ((per_core["synapses"] * bits / 8).floor() <= hw.synapse_memory_bytes).all()
    assert (per_core["layer"] == 1).all()  # only groups of one layer share a core
    for group in shared.groups:  # every neuron placed exactly once
        rows = cores_of(shared, group.layer, group.name)
        assert rows[
            "start"
        ][0] == 0 and rows["end"][-1] == group.neurons and rows["start"].to_list()[1:] == rows["end"].to_list()[:-1]
    assert shared.cores <= separate.cores


def test_packed_synapses_need_fewer_cores():
    config = HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-370M"])
    eight, two = map_model(config, HardwareConfig()), map_model(config, HardwareConfig(bits_per_synapse=2))
    assert two.cores < eight.cores and two.summary()["synapses"] == eight.summary()["synapses"]


def test_one_block_per_chip_puts_each_layer_on_its_own_chip():
    """The paper's layout: 370M's 24 blocks on 24 chips (the final norm with the last block), limits unchanged."""
    from inspector.chip.mapper import ONE_BLOCK_PER_CHIP

    config = HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-370M"])
    hw = HardwareConfig()
    packed, blocks = map_model(config, hw), map_model(config, hw, layout=ONE_BLOCK_PER_CHIP)
    check_limits(blocks, hw)
    assert (packed.chips, blocks.chips) == (15, 24) and blocks.cores == packed.cores
    per_layer = blocks.table.group_by("layer").agg(pl.col("chip").unique()).sort("layer")
    chips = dict(zip(per_layer["layer"].to_list(), per_layer["chip"].to_list(), strict=True))
    assert all(chips[layer] == [layer] for layer in range(24)) and chips[-1] == [23]
    assert blocks.oversized_blocks() is None and packed.oversized_blocks() is None
    # the per-core contents do not depend on the layout: only core numbers and chips move
    assert blocks.table.select("layer", "group", "start", "end", "synapses").equals(
        packed.table.select("layer", "group", "start", "end", "synapses")
    )


def test_a_block_larger_than_a_chip_spans_chips_and_says_so():
    from inspector.chip.mapper import ONE_BLOCK_PER_CHIP

    config = HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-1.3B"])
    core_map = map_model(config, HardwareConfig(), layout=ONE_BLOCK_PER_CHIP)
    check_limits(core_map, HardwareConfig())
    assert set(core_map.chips_per_block().values()) == {3} and core_map.chips == 72
    assert "do not fit one chip" in core_map.oversized_blocks() and "per-core limits" in core_map.oversized_blocks()
    with pytest.raises(MappingError, match="unknown layout"):
        map_model(config, HardwareConfig(), layout="diagonal")


def test_lm_head_on_chip_is_mapped_after_the_final_norm():
    from inspector.chip.mapper import LM_HEAD, ONE_BLOCK_PER_CHIP

    config = HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-370M"])
    hw = HardwareConfig()
    for layout, chips in (("packed", 16), (ONE_BLOCK_PER_CHIP, 26)):
        core_map = map_model(config, hw, layout=layout, lm_head_on_chip=True)
        check_limits(core_map, hw)
        head = core_map.table.filter(pl.col("group") == LM_HEAD)
        assert int(head["neurons"].sum()) == config.vocab_size and core_map.chips == chips
        assert head["core"].min() > core_map.table.filter(pl.col("group") == "final_norm")["core"].max()
    # one block per chip: the head starts on a chip of its own (2 chips at the typical density)
    assert head["chip"].n_unique() == 2 and head["chip"].min() == 24


def test_row_nonzeros_counts_like_torch():
    """The numpy count of stored synapses per row equals `(w != 0).sum(dim=1)` (int8, views, other dtypes)."""
    g = torch.Generator().manual_seed(7)
    ternary = torch.randint(-1, 2, (300, 257), generator=g, dtype=torch.int8)
    for weight in (ternary, ternary.T, ternary[:, ::3], ternary.float(), torch.zeros(4, 0, dtype=torch.int8)):
        counts = _row_nonzeros(weight)
        assert counts.dtype == np.int64 and np.array_equal(counts, (weight != 0).sum(dim=1).numpy())
