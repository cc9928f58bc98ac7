"""The Lava graph's layout: one process per core-map neuron group, every synapse a Lava Dense, and a
readback layout that names the emulator's sites (tests/test_lava_backend.py runs the graph)."""

from __future__ import annotations

import numpy as np
import torch

from inspector.backends.emulator import Emulator
from inspector.backends.lava.params import graph_spec, layer_layout, site_scale, synapse_weights
from inspector.chip.mapper import GROUP_ORDER
from inspector.lm.checkpoint import load_checkpoint
from inspector.schema import split_site_key


class _SiteOrder:
    """Records the layer-0 sites of one emulated token: (site, size, kind) in call order."""

    def __init__(self) -> None:
        self.sites: list[tuple[str, int, str, float]] = []

    def site(self, key, codes, scale, clipped, kind) -> None:
        layer, site = split_site_key(key)
        if layer == 0:
            self.sites.append((site, int(codes[0, 0].numel()), kind, float(scale)))

    def synapses(self, key, spikes, proj) -> None:
        pass


def test_readback_layout_names_the_emulators_sites_in_order(tiny_checkpoint):
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    order = _SiteOrder()
    emulator.integer(torch.tensor([[3]]), None, order)
    c = emulator.loaded.config
    layout = layer_layout(c.hidden_size, c.mixer_size, c.mlp_intermediate_size)
    layer = emulator.params.layers[0]
    assert [(s.site, s.size, s.kind, site_scale(layer, s.site)) for s in layout.slots] == order.sites
    # every group of the core map reports, and its message counts cover exactly its neurons
    table = emulator.core_map.table.filter(emulator.core_map.table["layer"] == 0)
    for group, neurons in layout.group_neurons:
        assert int(table.filter(table["group"] == group)["neurons"].sum()) == neurons, group
        part = layout.messages_slice(group)
        assert part.stop - part.start == neurons


def test_graph_has_one_process_per_core_map_group_and_dense_synapses(tiny_checkpoint):
    from inspector.lava_compat import install

    install()  # first: the patch Lava needs on Python 3.11, before any Lava import
    from lava.proc.dense.process import Dense

    from inspector.backends.lava.graph import LavaGraph

    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    params = emulator.params
    graph = LavaGraph(graph_spec(params), synapse_weights(params))  # built, not started
    assert len(graph.layers) == len(params.layers)
    for idx, layer in enumerate(graph.layers):
        assert tuple(type(p).group for p in layer.groups) == GROUP_ORDER
        for name, dense in layer.dense.items():
            assert isinstance(dense, Dense)
            weight = getattr(params.layers[idx], name).weight.numpy()
            stored = dense.weights.init  # 2w (see synapses.py), plus the two control synapses
            np.testing.assert_array_equal(stored[: weight.shape[0], : weight.shape[1]], 2 * weight)
            np.testing.assert_array_equal(stored[-2:, -2:], 2 * np.eye(2))


def test_the_synapses_are_built_with_the_configured_message_width(tiny_checkpoint):
    """QuantConfig.message_bits is the graded-spike width of every Dense of the graph (Lava's num_message_bits)."""
    from inspector.backends.lava.graph import LayerProcesses
    from inspector.quant.config import QuantConfig

    emulator = Emulator(load_checkpoint(tiny_checkpoint), QuantConfig(message_bits=16))
    spec = graph_spec(emulator.params)
    assert spec.qc_message_bits == 16
    layer = LayerProcesses(spec, 0, synapse_weights(emulator.params)[0])
    assert {int(np.asarray(d.num_message_bits.init).item()) for d in layer.dense.values()} == {16}
