"""The Learn tour's counts against independent recounts (plain loops over the model's weights and
codes), its sweeps against freshly built backends, and its figures as plain functions."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from inspector.backends.emulator import Emulator
from inspector.compare.analysis import analyze
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.config import PUBLISHED_CONFIGS
from inspector.lm.generate import SamplingSettings
from inspector.schema import PROJECTIONS
from inspector.views import teaching as T
from inspector.views import teaching_figures as TF


@pytest.fixture(scope="module")
def tour(tmp_path_factory, tiny_tokenizer):
    from inspector.lm.checkpoint import save_checkpoint
    from inspector.lm.model import HGRNBitForCausalLM
    from tests.conftest import randomize, tiny_config

    model = randomize(HGRNBitForCausalLM(tiny_config(vocab_size=tiny_tokenizer.get_vocab_size())))
    directory = save_checkpoint(model, tiny_tokenizer, tmp_path_factory.mktemp("tour") / "tiny")
    emulator = Emulator(load_checkpoint(directory))
    return emulator, analyze(emulator, "To be, or not", SamplingSettings(8, 0.7, 20, 2))


class CodeProbe:
    """Keeps every site's integer codes, nothing else: an independent view of what the model computed."""

    def __init__(self):
        self.codes: dict[str, torch.Tensor] = {}

    def site(self, key, codes, scale, clipped, kind):
        self.codes[key] = codes[0].clone()

    def synapses(self, key, spikes, proj):
        pass


def _codes(emulator, ids) -> dict[str, np.ndarray]:
    probe = CodeProbe()
    emulator.integer(torch.tensor([ids]), None, probe)
    return {k: v.numpy() for k, v in probe.codes.items()}


def test_additions_and_zero_weights_recounted_with_loops(tour):
    emulator, _ = tour
    L = emulator.params.layers[0]
    additions = zeros = 0
    for name in PROJECTIONS:
        for row in getattr(L, name).weight.tolist():
            additions += sum(1 for w in row if w != 0)
            zeros += sum(1 for w in row if w == 0)
    assert T.layer_op_counts(emulator)["synapse_additions"] == additions
    assert T.ternary_counts(emulator)["0"] == zeros


@pytest.mark.parametrize("layer", [0, 1])
def test_multiplies_recounted_from_the_equations(tour, layer):
    """Issue 21.1: nine RMSNorms (3 multiplies per element), requantizations, gates, residual rescales,
    recounted from the model's widths (D hidden, M mixer, I GLU) by hand."""
    emulator, _ = tour
    cfg = emulator.loaded.config
    D, M, I = cfg.hidden_size, cfg.mixer_size, cfg.mlp_intermediate_size  # noqa: E741
    norm_inputs = D + 3 * D + M + M + D + D + I  # attn_norm, i/f/g input norms, g_norm, o norm, mlp_norm, gate norm, down norm
    requants = 3 * M + M + M + M + D + 2 * I + I + D  # i/f/g, input->state, state->code, gated, o, gate and y, glu, down
    gates = M + M + M + I + (M if layer > 0 else 0)  # silu(i)(1-f), f*h, gnorm*swish(h), silu(gate)*y, (1-lb)*f
    residual = 2 * 2 * D
    ops = T.layer_op_counts(emulator, layer)
    assert ops["norms"] == 9
    assert ops["norm_multiplies"] == 3 * norm_inputs
    assert ops["requantize_multiplies"] == requants
    assert ops["gate_multiplies"] == gates
    assert ops["multiplies"] == 3 * norm_inputs + requants + gates + residual


def test_memory_in_tokens_recounted_from_codes(tour):
    emulator, analysis = tour
    memory = T.forget_memory(analysis, emulator.qc.gate_frac_bits)
    one = 1 << emulator.qc.gate_frac_bits
    for layer in range(len(emulator.params.layers)):
        codes = analysis.diff.int_probe.site_codes(f"layers.{layer}.forget_gate").tolist()
        values = [1.0 / max(1.0 - c / one, 1.0 / one) for row in codes for c in row]
        row = memory.filter(pl.col("layer") == layer).row(0, named=True)
        assert row["mean_memory_tokens"] == pytest.approx(sum(values) / len(values))
        assert row["median_memory_tokens"] == pytest.approx(float(np.median(values)))
        assert row["mean_forget_gate"] == pytest.approx(sum(c / one for r in codes for c in r) / len(values))
    assert T.lower_bounds(emulator)[0] == 0.0


def test_message_counts_recounted_with_loops(tour):
    """Every neuron, nonzero, sigma-delta changes and sigma-delta at a vth, recounted neuron by neuron
    from codes the integer model computes again (a probe of the test's own): a sigma-delta neuron sends
    when its code differs from what its receivers hold by at least vth (vth 0: by anything)."""
    emulator, analysis = tour
    vth = 2
    counts = T.message_counts(analysis, emulator, vth)
    start = analysis.window_start
    codes = _codes(emulator, analysis.run.all_ids)
    for layer, L in enumerate(emulator.params.layers):
        for name in PROJECTIONS:
            c = codes[f"layers.{layer}.{name}.spikes"][start:].astype(int)
            fan_out = [int(x) for x in (getattr(L, name).weight != 0).sum(dim=0)]
            tokens, neurons = c.shape
            encodings = ("every neuron", "graded spikes (nonzero)", "sigma-delta (changes)", f"sigma-delta, vth {vth}")
            expected, ops = dict.fromkeys(encodings, 0), dict.fromkeys(encodings, 0)
            for n in range(neurons):
                held0 = heldk = 0  # what the receivers hold
                for t in range(tokens):
                    v = int(c[t, n])
                    sends = {"every neuron": True, "graded spikes (nonzero)": v != 0, "sigma-delta (changes)": v != held0,
                             f"sigma-delta, vth {vth}": abs(v - heldk) >= vth}
                    held0 = v
                    if abs(v - heldk) >= vth:
                        heldk = v
                    for k, s in sends.items():
                        expected[k] += s
                        ops[k] += fan_out[n] if s else 0
            part = counts.filter((pl.col("layer") == layer) & (pl.col("projection") == name))
            assert part["encoding"].to_list() == list(encodings)
            for row in part.iter_rows(named=True):
                assert row["messages_per_token"] == pytest.approx(expected[row["encoding"]] / tokens), (layer, name, row)
                assert row["synops_per_token"] == pytest.approx(ops[row["encoding"]] / tokens)
    totals = T.messaging_totals(counts)
    assert totals.filter(pl.col("encoding") == "every neuron")["share_of_every_neuron"][0] == 1.0


def test_nonzero_spike_share_recounted_from_codes(tour):
    """The sweep's "nonzero spikes" at the user's width: the share of nonzero codes over all spike sites."""
    emulator, analysis = tour
    ids = analysis.run.all_ids
    sweep = T.bits_sweep(emulator, ids, "spike_bits", (emulator.qc.spike_bits,))
    codes = _codes(emulator, ids)
    spikes = [v for k, v in codes.items() if k.endswith(".spikes") and k.startswith("layers.")]
    nonzero = sum(int((s != 0).sum()) for s in spikes) / sum(s.size for s in spikes)
    assert sweep["nonzero_spikes"][0] == pytest.approx(nonzero)


def test_variant_is_bit_exact_with_a_fresh_backend(tour):
    """The sweeps reuse the calibration; the integers must be those of a backend built from scratch."""
    emulator, analysis = tour
    ids = torch.tensor([analysis.run.all_ids])
    for overrides in ({"spike_bits": 5}, {"state_bits": 10}):
        fast = T.variant(emulator, overrides)
        fresh = Emulator(emulator.loaded, emulator.qc.with_overrides(overrides))
        a, b = fast.integer(ids), fresh.integer(ids)
        assert torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1], strict=True))
    assert emulator.qc.spike_bits == 8  # the original is untouched


def test_sweeps_move_as_the_tour_says(tour):
    emulator, analysis = tour
    spikes = T.bits_sweep(emulator, analysis.run.all_ids, "spike_bits", (8, 4))
    assert spikes["nonzero_spikes"][1] < spikes["nonzero_spikes"][0]
    states = T.bits_sweep(emulator, analysis.run.all_ids, "state_bits", (24, 8))
    assert states["states_underflowed"][1] > states["states_underflowed"][0]


def test_group_split_and_published_mapping(tour):
    emulator, _ = tour
    core_map = emulator.core_map
    split = T.group_split(core_map)
    layer0 = core_map.table.filter(pl.col("layer") == 0)
    assert int(split["cores"].sum()) == layer0.height
    for row in split.iter_rows(named=True):
        group = layer0.filter(pl.col("group") == row["group"])
        assert row["neurons"] == int(group["neurons"].sum()) and row["synapses"] == int(group["synapses"].sum())
        if row["cores"] > 1:
            assert row["deciding_limit"] in ("synapse memory", "core SRAM", "neurons per core")
    big = T.published_mapping("MMfreeLM-370M")
    assert big["hidden_size"] == PUBLISHED_CONFIGS["MMfreeLM-370M"]["hidden_size"]
    assert big["chips"] == math.ceil(big["cores"] / 128)
    assert big["cores"] == big["layers"] * big["cores_per_layer"] + 1  # plus the final norm's core


def test_paper_arithmetic():
    paper = T.paper_energy()
    assert paper["generation_w"] == pytest.approx(16.8, abs=0.05)  # 405 mJ x 41.5/s
    assert paper["prefill_w"] == pytest.approx(24.5, abs=0.05)  # 3.7 mJ x 6,632/s
    assert paper["dynamic_mj_per_token"] == pytest.approx(1.2, abs=0.05)
    assert paper["ms_per_token"] == pytest.approx(24.1, abs=0.05)


def test_energy_split_adds_up(tour):
    from inspector.chip.estimate import estimate

    emulator, analysis = tour
    split = T.energy_split(analysis, emulator)
    est = estimate(analysis.tables["activity"], emulator.core_map.chips)
    assert split["total_mj"] == pytest.approx(est.energy_per_token_mj)
    assert split["static_mj"] + split["dynamic_mj"] == pytest.approx(split["total_mj"])
    assert 0 < split["static_share"] < 1


def test_tour_neuron_moves_most(tour):
    _, analysis = tour
    h = analysis.diff.float_values["layers.0.hidden"].abs().mean(dim=0)
    assert float(h[T.tour_neuron(analysis)]) == float(h.max())


def test_flow_map_highlights_and_rejects_unknown_nodes():
    dot = TF.flow_map_dot(("mlgru", "lm_head"))
    for name, _, _ in TF.FLOW_NODES:
        assert f"  {name} [" in dot
    lines = {line.split("[")[0].strip(): line for line in dot.splitlines() if "fillcolor" in line}
    assert TF.HIGHLIGHT in lines["mlgru"] and TF.HIGHLIGHT in lines["lm_head"] and TF.HIGHLIGHT not in lines["glu"]
    assert dot.count("->") == len(TF.FLOW_NODES) - 1 + 2  # the chain and two residual skips
    with pytest.raises(ValueError, match="unknown"):
        TF.flow_map_dot(("attention",))


def test_tour_figures_say_what_colours_mean(tour):
    emulator, analysis = tour
    kl = TF.kl_legend_figure(analysis.diff.tokens, analysis.prompt_tokens)
    assert [t.name for t in kl.data] == ["same top-1 token", "different top-1 token"]
    assert sum(len(t.y) for t in kl.data) == analysis.diff.tokens.height
    energy = TF.energy_share_figure([{"system": "a", "static_mj": 3.0, "dynamic_mj": 1.0}])
    assert [t.name for t in energy.data][0].startswith("static") and sum(t.x[0] for t in energy.data) == pytest.approx(1)
    m = emulator.params.layers[0].f_proj.matrix
    hist = TF.weight_histogram_figure(m.latent_histogram.numpy(), m.histogram_edges().numpy(), m.beta, "w")
    assert [t.name for t in hist.data] == ["becomes -1", "becomes 0", "becomes +1"]
    assert sum(sum(t.y) for t in hist.data) == int(m.latent_histogram.sum())
    msg = TF.messaging_figure(T.messaging_totals(T.message_counts(analysis, emulator)))
    assert all(t.name for t in msg.data) and msg.layout.showlegend
    f = analysis.diff.float_values["layers.0.hidden"].numpy()
    gate = np.full_like(f, 0.5)
    mlgru = TF.mlgru_figure(list(range(f.shape[0])), f, f, gate, [0, 1], 0)
    assert len(mlgru.data) == 6 and all(t.name.startswith("neuron") for t in mlgru.data)
    cores = TF.layer_cores_figure(emulator.core_map.table, 128 * 1024, 192 * 1024, 0)
    assert {t.name for t in cores.data} <= set(emulator.core_map.table["group"].to_list())


def test_local_vs_cumulative_for_the_tour(tour):
    from inspector.compare.local_error import local_vs_cumulative

    emulator, analysis = tour
    table = T.local_cumulative_sqnr(emulator, analysis.run.all_ids)
    sites = local_vs_cumulative(emulator, analysis.run.all_ids).sites
    assert table["layer"].to_list() == list(range(len(emulator.params.layers)))
    for row in table.iter_rows(named=True):
        ref = sites.filter((pl.col("site") == "residual_mlp") & (pl.col("layer") == row["layer"])).row(0, named=True)
        assert row["local_sqnr_db"] == ref["local_sqnr_db"] and row["cumulative_sqnr_db"] == ref["cumulative_sqnr_db"]
    fig = TF.local_cumulative_figure(table, "residual_mlp", 8)
    assert [t.name.split(":")[0] for t in fig.data] == ["local", "cumulative"]
