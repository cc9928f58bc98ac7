"""Event-driven messaging (inspector.quant.messaging): sigma-delta and threshold against plain references,
the integer model's sequence and token paths, the probes' counts and the hardware estimate."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from inspector.backends.emulator import Emulator
from inspector.chip.estimate import estimate
from inspector.chip.probes import RecordingProbe
from inspector.lm.checkpoint import load_checkpoint
from inspector.quant.config import QuantConfig, QuantConfigError
from inspector.quant.files import load_quant_config
from inspector.quant.messaging import GROUPS, Messaging, count_messages, transmit, transmit_in_place, zero_state


def lava_delta_step(code: torch.Tensor, state: torch.Tensor, vth: int, cum_error: bool):
    """One token of Lava's Delta as `lava.proc.sdn` writes it, with act and residue kept apart:
    (sent, received, new state (B, 3, N) = act, residue, error). The plain reference of the
    emulator's (held, error) encoder, held = act - residue."""
    act, residue, error = state.unbind(1)
    delta = code - act + residue
    if cum_error:
        error = error + delta
        sent = torch.where(error.abs() >= vth, delta, 0)
        error = torch.where(sent != 0, 0, error)
    else:
        sent = torch.where(delta.abs() >= vth, delta, 0)
    residue = delta - sent
    return sent, code - residue, torch.stack([code, residue, error], dim=1)


def plain_sigma_delta(codes: list[list[int]], weight: list[list[int]], vth: int, cum_error: bool):
    """Lava's Delta (sender) and Sigma (receiver of W times the deltas) for one site, in plain loops.

    codes[t][n]; weight[o][n]. Returns per token the sent deltas (payload, 0 = none) and each
    receiver's accumulated synaptic input.
    """
    neurons = len(codes[0])
    act, residue, error = [0] * neurons, [0] * neurons, [0] * neurons
    sigma = [0] * len(weight)
    sent_all, inputs_all = [], []
    for row in codes:
        sent = []
        for n in range(neurons):
            delta = row[n] - act[n] + residue[n]
            if cum_error:
                error[n] += delta
                s = delta if abs(error[n]) >= vth else 0
                if s != 0:
                    error[n] = 0
            else:
                s = delta if abs(delta) >= vth else 0
            residue[n] = delta - s
            act[n] = row[n]
            sent.append(s)
        for o in range(len(weight)):
            sigma[o] += sum(weight[o][n] * sent[n] for n in range(neurons))
        sent_all.append(sent)
        inputs_all.append(list(sigma))
    return sent_all, inputs_all


def _codes(tokens=12, neurons=9, seed=0, spread=6):
    """Slowly drifting 8-bit codes, some zeros: a realistic mix of small and large changes."""
    gen = np.random.default_rng(seed)
    walk = np.cumsum(gen.integers(-spread, spread + 1, size=(tokens, neurons)), axis=0) + gen.integers(-60, 60, neurons)
    walk[gen.random((tokens, neurons)) < 0.15] = 0
    return np.clip(walk, -128, 127)


@pytest.mark.parametrize("vth", [0, 1, 2, 5, 17])
@pytest.mark.parametrize("cum_error", [False, True])
def test_sigma_delta_matches_a_plain_reference(vth, cum_error):
    codes = _codes()
    weight = np.random.default_rng(1).integers(-1, 2, size=(4, codes.shape[1]))
    ref_sent, ref_inputs = plain_sigma_delta(codes.tolist(), weight.tolist(), vth, cum_error)
    received, sent, _ = transmit(torch.tensor(codes)[None], Messaging("delta", vth, cum_error))
    assert sent[0].tolist() == ref_sent
    # our receivers accumulate W times the reconstruction; the plain one sums W times each delta
    assert (received[0] @ torch.tensor(weight).T).tolist() == ref_inputs
    assert count_messages(codes, "delta", vth, cum_error).tolist() == [sum(s != 0 for s in row) for row in ref_sent]


def test_delta_at_zero_sends_exactly_the_changed_codes_and_delivers_the_codes():
    codes = _codes(spread=1)
    received, sent, state = transmit(torch.tensor(codes)[None], Messaging("delta", 0))
    assert torch.equal(received[0], torch.tensor(codes))
    previous = np.vstack([np.zeros((1, codes.shape[1]), dtype=codes.dtype), codes[:-1]])
    assert count_messages(codes, "delta", 0).tolist() == (codes != previous).sum(axis=1).tolist()
    assert count_messages(codes, "dense").tolist() == (codes != 0).sum(axis=1).tolist()
    assert state[0, 0].tolist() == codes[-1].tolist() and not state[0, 1:].any()


def test_delta_token_by_token_equals_the_sequence():
    codes = torch.tensor(_codes(tokens=10))[None]
    m = Messaging("delta", 4, True)
    whole_received, whole_sent, whole_state = transmit(codes, m)
    state, parts = None, []
    for t in range(codes.shape[1]):
        received, sent, state = transmit(codes[:, t : t + 1], m, state)
        parts.append((received, sent))
    assert torch.equal(torch.cat([p[0] for p in parts], 1), whole_received)
    assert torch.equal(torch.cat([p[1] for p in parts], 1), whole_sent)
    assert torch.equal(state, whole_state)


@pytest.mark.parametrize("vth", [0, 1, 2, 4, 17])
@pytest.mark.parametrize("cum_error", [False, True])
def test_the_in_place_single_token_path_equals_lavas_delta_step(vth, cum_error):
    """Generation's fast path (numpy, on a view of a packed (held, error) state) against Lava's
    act/residue formula, token by token."""
    m = Messaging("delta", vth, cum_error)
    gen = np.random.default_rng(vth + 100 * cum_error)
    batch, neurons, tokens = 2, 11, 9
    packed = zero_state(batch, 5 + neurons + 3).numpy()  # the site's encoders sit between other sites' in one buffer
    view = packed[:, :, 5 : 5 + neurons]
    plain = torch.zeros(batch, 3, neurons, dtype=torch.int64)
    for _ in range(tokens):
        code = torch.tensor(gen.integers(-40, 41, size=(batch, 1, neurons)))
        ref_sent, ref_received, plain = lava_delta_step(code[:, 0], plain, vth, cum_error)
        received, sent = transmit_in_place(code, m, view)
        assert torch.equal(sent[:, 0], ref_sent) and torch.equal(received[:, 0], ref_received)
        act, residue, error = plain.unbind(1)
        assert np.array_equal(view[:, 0], (act - residue).numpy()) and np.array_equal(view[:, 1], error.numpy())
    assert not packed[:, :, :5].any() and not packed[:, :, 5 + neurons :].any()
    # several tokens at once through the same entry point: the sequence formula, the state written back
    codes = torch.tensor(gen.integers(-40, 41, size=(batch, 4, neurons)))
    ref_received, ref_sent, ref_state = transmit(codes, m, torch.from_numpy(view.copy()))
    received, sent = transmit_in_place(codes, m, view)
    assert torch.equal(received, ref_received) and torch.equal(sent, ref_sent) and np.array_equal(view, ref_state.numpy())
    # ... and that formula token by token against Lava's
    for t in range(codes.shape[1]):
        ref_sent, ref_received, plain = lava_delta_step(codes[:, t], plain, vth, cum_error)
        assert torch.equal(sent[:, t], ref_sent) and torch.equal(received[:, t], ref_received)


def test_the_senders_leave_the_callers_state_untouched(tiny_checkpoint):
    """A generation state may be stepped twice from the same point (branching, lockstep comparisons)."""
    loaded = load_checkpoint(tiny_checkpoint)
    integer = Emulator(loaded, _delta(3, True)).integer
    ids = torch.tensor([loaded.tokenizer.encode("To be, or not to be").ids[:6]])
    _, state = integer(ids[:, :4])
    kept = [s.clone() for s in state]
    first, _ = integer(ids[:, 4:5], state)
    assert all(torch.equal(a, b) for a, b in zip(state, kept, strict=True))
    again, _ = integer(ids[:, 4:5], state)
    assert torch.equal(first, again)


def test_threshold_sends_only_codes_of_at_least_vth():
    codes = _codes()
    received, sent, state = transmit(torch.tensor(codes)[None], Messaging("threshold", 20))
    expected = np.where(np.abs(codes) >= 20, codes, 0)
    assert received[0].tolist() == expected.tolist() and sent[0].tolist() == expected.tolist() and state is None


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"vth_o": -1}, "vth_o"),
        ({"vth_ifg": 129}, "vth_ifg"),
        ({"spike_bits": 4, "vth_down": 9}, "vth_down"),
        ({"messaging_gate": "sparse"}, "messaging_gate"),
        ({"messaging_down": 3}, "messaging_down"),
        ({"vth_gate": 1.5}, "vth_gate"),
    ],
)
def test_bad_messaging_settings_name_the_field(overrides, field):
    with pytest.raises(QuantConfigError, match=f"QuantConfig.{field}"):
        QuantConfig().with_overrides(overrides)


def test_a_saved_file_with_a_bad_mode_is_refused(tmp_path):
    path = tmp_path / "qc.json"
    path.write_text('{"quant_config": {"messaging_o": "delta", "vth_o": 500}}', encoding="utf-8")
    with pytest.raises(QuantConfigError, match="vth_o=500"):
        load_quant_config(path)


def test_the_cli_refuses_a_bad_mode():
    from inspector.cli import parse_overrides

    with pytest.raises(QuantConfigError, match="messaging_ifg"):
        parse_overrides(["messaging_ifg=often"])


# -- the integer model ----------------------------------------------------------------------------
def _delta(vth: int, cum_error: bool = False) -> QuantConfig:
    fields = {f"messaging_{g}": "delta" for g in GROUPS} | {f"vth_{g}": vth for g in GROUPS}
    return QuantConfig().with_overrides(fields | {"messaging_cum_error": cum_error})


def _token_by_token(integer, ids: torch.Tensor):
    """The integer model fed one token per call (generation's path): (logits (B, T, vocab), last state)."""
    state, rows = None, []
    for t in range(ids.shape[1]):
        row, state = integer(ids[:, t : t + 1], state)
        rows.append(row)
    return torch.cat(rows, 1), state


@pytest.mark.parametrize("cum_error", [False, True])
def test_the_sequence_path_equals_token_by_token_under_delta(tiny_checkpoint, cum_error):
    loaded = load_checkpoint(tiny_checkpoint)
    integer = Emulator(loaded, _delta(3, cum_error)).integer
    ids = torch.tensor([loaded.tokenizer.encode("To be, or not to be, that is").ids[:10]])
    logits, state = integer(ids)
    step_logits, step_state = _token_by_token(integer, ids)
    assert torch.equal(step_logits, logits)
    assert len(state) == 2 * len(integer.params.layers)
    assert all(torch.equal(a, b) for a, b in zip(state, step_state, strict=True))


def _activity(loaded, qc: QuantConfig, ids: torch.Tensor):
    emulator = Emulator(loaded, qc)
    probe = RecordingProbe(emulator.core_map, record_tensors=False, qc=qc)
    logits, _ = emulator.integer(ids, None, probe)
    return logits, probe, emulator


def test_probes_count_changes_under_delta_and_the_estimate_follows(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([loaded.tokenizer.encode(" Once upon a time there was a little girl named Lily.").ids[:16]])
    dense_logits, dense, emulator = _activity(loaded, QuantConfig(), ids)
    zero_logits, zero, _ = _activity(loaded, _delta(0), ids)
    assert torch.equal(dense_logits, zero_logits)
    # the norm_attn group of layer 0 sends the i, f, g spikes: under delta, only their changes
    spikes = [dense.site_codes(f"layers.0.{p}_proj.spikes").numpy() for p in "ifg"]
    changed = sum(count_messages(s, "delta", 0) for s in spikes)
    nonzero = sum(count_messages(s, "dense") for s in spikes)
    by_token = lambda probe: (  # noqa: E731
        probe.activity().filter((pl.col("layer") == 0) & (pl.col("group") == "norm_attn"))
        .group_by("token").agg(pl.col("messages").sum(), pl.col("synops").sum()).sort("token")
    )
    assert by_token(dense)["messages"].to_list() == nonzero.tolist()
    assert by_token(zero)["messages"].to_list() == changed.tolist()
    # synaptic ops are the sent messages times their fan-out: fewer messages, fewer ops
    assert by_token(zero)["synops"].sum() <= by_token(dense)["synops"].sum()
    _, coarse, _ = _activity(loaded, _delta(24), ids)
    dense_cost = estimate(dense.activity(), emulator.core_map.chips)
    coarse_cost = estimate(coarse.activity(), emulator.core_map.chips)
    assert coarse.activity()["messages"].sum() < dense.activity()["messages"].sum()
    assert coarse_cost.energy_per_token_mj < dense_cost.energy_per_token_mj


def test_messaging_knobs_and_the_threshold_ladder():
    from inspector.sweep.knobs import VTH_RUNGS, knobs

    found, skipped = knobs(QuantConfig())
    names = {k.name for k in found}
    assert {f"messaging_{g}" for g in GROUPS} <= names
    assert not names & {f"vth_{g}" for g in GROUPS} and "vth_o" in skipped  # thresholds of dense groups change nothing
    found, _ = knobs(_delta(0))
    vth = {k.name: k for k in found}["vth_o"]
    assert vth.searchable and not vth.per_layer
    assert vth.ladder(0) == VTH_RUNGS[1] and vth.ladder(VTH_RUNGS[-1]) is None


def test_links_refuse_bad_messaging_values_by_name():
    from inspector.ui.url_settings import fields, parse_query

    spec = fields(("shakespeare",), ("emulator",))
    values, problems = parse_query({"messaging_o": "delta", "vth_o": "4", "messaging_gate": "often", "vth_down": "-2"}, spec)
    assert values == {"q_messaging_o": "delta", "q_vth_o": 4}
    assert any(p.startswith("messaging_gate from the link") for p in problems)
    assert any(p.startswith("vth_down from the link") for p in problems)


def test_published_activity_counts_under_the_messaging_mode(tiny_checkpoint):
    """The published sizes' layer-by-layer activity follows the messaging mode, bit for bit with the emulator."""
    from inspector.chip.activity import core_activity
    from inspector.chip.published import MeasuredActivity, measure_layerwise
    from inspector.lm.tokenizer import encode
    from inspector.quant.calibrate import default_calibration_text

    loaded = load_checkpoint(tiny_checkpoint)
    qc = _delta(5).with_overrides({"calibration_tokens": 300, "messaging_gate": "threshold"})
    emulator = Emulator(loaded, qc)
    ids = list(range(3, 19))
    _, probe = emulator.teacher_forced(ids, record_tensors=False)
    model = loaded.model.model
    calibration_ids = encode(loaded.tokenizer, default_calibration_text())[: qc.calibration_tokens]
    groups, activity = measure_layerwise(
        loaded.config, qc, lambda k: model.layers[k], model.embeddings, model.layer_lower_bounds(), model.norm,
        calibration_ids, ids,
    )
    measured = MeasuredActivity("tiny", "its own weights", groups, activity)
    assert core_activity(measured.activity, measured.core_map(emulator.hardware)).equals(probe.activity())


def test_the_activity_table_names_each_groups_mode(tiny_checkpoint):
    from inspector.compare.traces import with_messaging

    loaded = load_checkpoint(tiny_checkpoint)
    qc = QuantConfig().with_overrides({"messaging_o": "delta", "vth_o": 4})
    _, probe, _ = _activity(loaded, qc, torch.tensor([[5, 6, 7, 8]]))
    table = with_messaging(probe.activity(), qc)
    modes = dict(table.select("group", "messaging").unique().iter_rows())
    assert modes["mlgru"] == "delta vth=4" and modes["norm_attn"] == "dense" and modes["proj_o"] == "dense"


# -- the element-wise groups: projection outputs and the residual stream --------------------------------
ELEMENT_WISE = [key for key, g in GROUPS.items() if not g.projections]


def test_every_sending_group_of_the_layer_has_a_messaging_key():
    from inspector import schema as S

    senders = {g.name for g in S.LAYER_GROUPS if g.messages}
    assert {g.core_group for g in GROUPS.values()} == senders
    assert {site for g in GROUPS.values() for site in g.sites} == {
        site.name for site in S.LAYER_FLOW if site.message
    }
    assert set(ELEMENT_WISE) == {"ifg_out", "o_out", "gate_out", "down_out", "residual"}


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"vth_ifg_out": -1}, "vth_ifg_out"),
        ({"internal_bits": 8, "vth_gate_out": 129}, "vth_gate_out"),
        ({"vth_o_out": 129}, "vth_o_out"),  # act_bits = 8
        ({"residual_bits": 10, "vth_residual": 513}, "vth_residual"),
        ({"messaging_down_out": "sometimes"}, "messaging_down_out"),
    ],
)
def test_bad_element_wise_settings_name_the_field(overrides, field):
    with pytest.raises(QuantConfigError, match=f"QuantConfig.{field}"):
        QuantConfig().with_overrides(overrides)


def test_a_threshold_is_checked_against_its_groups_own_width():
    qc = QuantConfig().with_overrides({"residual_bits": 10, "vth_residual": 512, "internal_bits": 12, "vth_ifg_out": 2048})
    assert qc.vth_residual == 512 and qc.vth_ifg_out == 2048


def _group_messages(probe, layer: int, group: str) -> list[int]:
    table = probe.activity().filter((pl.col("layer") == layer) & (pl.col("group") == group))
    return table.group_by("token").agg(pl.col("messages").sum()).sort("token")["messages"].to_list()


@pytest.mark.parametrize("key", ELEMENT_WISE)
def test_an_element_wise_group_under_delta_at_zero_sends_only_changes_and_changes_nothing(tiny_checkpoint, key):
    loaded = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([loaded.tokenizer.encode(" Once upon a time there was a little girl named Lily.").ids[:12]])
    dense_logits, dense, _ = _activity(loaded, QuantConfig(), ids)
    qc = QuantConfig().with_overrides({f"messaging_{key}": "delta"})
    zero_logits, zero, _ = _activity(loaded, qc, ids)
    assert torch.equal(dense_logits, zero_logits)
    group = GROUPS[key]
    for layer in range(len(loaded.model.model.layers)):
        codes = [dense.site_codes(f"layers.{layer}.{site}").numpy() for site in group.sites]
        assert _group_messages(dense, layer, group.core_group) == sum(count_messages(c, "dense") for c in codes).tolist()
        assert _group_messages(zero, layer, group.core_group) == sum(count_messages(c, "delta", 0) for c in codes).tolist()
    # the other groups count as before
    others = dense.activity().filter(pl.col("group") != group.core_group)["messages"].sum()
    assert zero.activity().filter(pl.col("group") != group.core_group)["messages"].sum() == others


@pytest.mark.parametrize("key", ELEMENT_WISE)
def test_an_element_wise_threshold_changes_what_the_receivers_read(tiny_checkpoint, key):
    """vth > 0: the receivers read the sent sum, not the code: outputs differ, the probe still
    records the sender's codes, and the messages are fewer."""
    loaded = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([loaded.tokenizer.encode(" Once upon a time there was a little girl named Lily.").ids[:12]])
    dense_logits, dense, _ = _activity(loaded, QuantConfig(), ids)
    qc = QuantConfig().with_overrides({f"messaging_{key}": "delta", f"vth_{key}": 6})
    logits, coarse, _ = _activity(loaded, qc, ids)
    assert not torch.equal(dense_logits, logits)
    core_group = GROUPS[key].core_group
    assert sum(_group_messages(coarse, 0, core_group)) < sum(_group_messages(dense, 0, core_group))
    # layer 0's first message site is computed from the same inputs in both runs
    first = GROUPS[key].sites[0]
    assert torch.equal(dense.site_codes(f"layers.0.{first}"), coarse.site_codes(f"layers.0.{first}"))


def test_the_delta_state_holds_every_stateful_sender(tiny_checkpoint):
    """Generation state: per layer, one (B, 2, N) encoder state over every delta group's message sites."""
    loaded = load_checkpoint(tiny_checkpoint)
    config = loaded.config
    qc = QuantConfig().with_overrides({"messaging_residual": "delta", "vth_residual": 3, "messaging_gate_out": "delta"})
    integer = Emulator(loaded, qc).integer
    state = integer.init_state()
    layers = config.num_hidden_layers
    assert len(state) == 2 * layers
    assert state[layers].shape == (1, 2, config.hidden_size + 2 * config.mlp_intermediate_size)
    ids = torch.tensor([loaded.tokenizer.encode("To be, or not to be, that is").ids[:8]])
    logits, after = integer(ids)
    step_logits, step_state = _token_by_token(integer, ids)
    assert torch.equal(step_logits, logits)
    assert all(torch.equal(a, b) for a, b in zip(after, step_state, strict=True))
    assert bool(after[layers][:, 0].any())  # the encoders hold the last codes sent


def test_links_cli_and_sweeps_take_the_element_wise_groups():
    from inspector.cli import parse_overrides
    from inspector.sweep.knobs import knobs
    from inspector.ui.url_settings import fields, parse_query

    spec = fields(("shakespeare",), ("emulator",))
    values, problems = parse_query({"messaging_residual": "delta", "vth_residual": "3", "messaging_o_out": "often"}, spec)
    assert values == {"q_messaging_residual": "delta", "q_vth_residual": 3}
    assert any(p.startswith("messaging_o_out from the link") for p in problems)
    qc = parse_overrides(["messaging_gate_out=threshold", "vth_gate_out=5"])
    assert (qc.messaging_gate_out, qc.vth_gate_out) == ("threshold", 5)
    found, _ = knobs(QuantConfig().with_overrides({"messaging_down_out": "delta"}))
    names = {k.name for k in found}
    assert {f"messaging_{g}" for g in ELEMENT_WISE} <= names and "vth_down_out" in names and "vth_o_out" not in names
