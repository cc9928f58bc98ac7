"""Per-token cost against context length: the transformer's KV-cache roofline by hand, the crossover, the figure."""

from __future__ import annotations

import pytest

from inspector.chip.context_length import (
    CONTEXTS,
    TRANSFORMER_SOURCES,
    ContextError,
    TransformerBaseline,
    context_table,
    crossovers,
)
from inspector.chip.paper import context_points
from inspector.views.figures import context_length_figure

# round numbers: 1e9 parameters at 1 byte = 1 GB of weights; 2 x 10 layers x 100 values x 1 byte = 2,000 bytes per token
GPU = TransformerBaseline(parameters=1e9, layers=10, kv_width=100, bytes_per_value=1, bandwidth_gb_s=100, watts=10)


def test_roofline_by_hand():
    assert GPU.kv_bytes_per_context_token() == 2000
    # 1e9 + 2000 * 1e6 bytes over 100 GB/s = 30 ms
    assert GPU.seconds_per_token([1_000_000]) == pytest.approx([0.03])
    table = context_table(50.0, 100.0, GPU, [1000, 1_000_000])
    gpu = table.filter(table["system"].str.starts_with("transformer"))
    assert gpu["tokens_per_s"].to_list() == pytest.approx([1 / 0.01002, 1 / 0.03])
    assert gpu["mj_per_token"].to_list() == pytest.approx([100.2, 300])
    ours = table.filter(table["system"].str.starts_with("Loihi"))
    assert ours["tokens_per_s"].to_list() == [50.0, 50.0] and ours["mj_per_token"].to_list() == [100.0, 100.0]


def test_crossover_by_hand():
    # ours 50 tokens/s = 20 ms per token: 1e9 + 2000 L = 2e9 -> L = 500,000; 100 mJ at 10 W = 10 ms: the GPU is
    # already that slow at L = 0 -> 1e9 + 2000 L = 1e9 -> no positive crossover
    cross = crossovers(50.0, 100.0, GPU)
    assert cross["tokens_per_s"] == pytest.approx(500_000)
    assert cross["mj_per_token"] is None
    assert crossovers(50.0, 200.0, GPU)["mj_per_token"] == pytest.approx(500_000)


def test_defaults_are_qwen_on_a_jetson_with_sources():
    d = TransformerBaseline()
    assert (d.parameters, d.layers, d.kv_width, d.bytes_per_value, d.bandwidth_gb_s) == (494e6, 24, 128, 2, 68)
    assert TRANSFORMER_SOURCES["watts"].startswith("assumed") and TRANSFORMER_SOURCES["bandwidth_share"].startswith("assumed")
    assert "68 GB/s" in TRANSFORMER_SOURCES["bandwidth_gb_s"] and "Qwen2.5-0.5B" in TRANSFORMER_SOURCES["kv_width"]


@pytest.mark.parametrize(("field", "value"), [("watts", 0), ("layers", -3), ("bandwidth_gb_s", float("nan")),
                                              ("parameters", 1e20), ("bandwidth_share", 2.0)])
def test_bad_baseline_fields_are_named(field, value):
    from inspector.chip.context_length import TRANSFORMER_LABELS

    with pytest.raises(ContextError, match=TRANSFORMER_LABELS[field].split(" (")[0]):
        TransformerBaseline(**{field: value})


def test_context_figure_marks_the_crossover_and_the_papers_points():
    table = context_table(50.0, 200.0, GPU, [500, 1_000_000])
    fig = context_length_figure(table, crossovers(50.0, 200.0, GPU), context_points())
    names = {trace.name for trace in fig.data}
    assert any(n.startswith("paper: Loihi 2") for n in names) and any("Jetson" in n for n in names)
    assert len([s for s in fig.layout.shapes if s.line.dash == "dot"]) == 2  # both crossovers inside the range
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 4  # two systems x two panels
    default = context_table(41.5, 405, TransformerBaseline(), CONTEXTS)
    fig = context_length_figure(default, crossovers(41.5, 405, TransformerBaseline()), context_points())
    assert not [s for s in fig.layout.shapes if s.line.dash == "dot"]  # the roofline crosses beyond 16k: not drawn
    jetson = next(t for t in fig.data if "Jetson" in t.name)
    assert jetson.error_y.array[0] > 0
