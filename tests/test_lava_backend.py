"""The Lava backend: the smallest sample model runs through Lava's fixed-point simulator and every
output token and every probed integer tensor equals the emulator's, bit for bit."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from inspector.backends import base as backends
from inspector.backends.base import make_backend, status_of
from inspector.backends.emulator import Emulator
from inspector.backends.lava.activity import PortActivityProbe
from inspector.backends.lava.backend import LavaLM
from inspector.backends.lava.worker import LavaBackendError
from inspector.errors import BackendUnavailableError
from inspector.lm.catalog import SAMPLE_MODELS_DIR
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings
from inspector.quant.config import QuantConfig


def _smallest_sample_model():
    models = [load_checkpoint(p) for p in sorted(SAMPLE_MODELS_DIR.iterdir()) if (p / "config.json").exists()]
    return min(models, key=lambda m: m.model.num_parameters())


def _generate_on_both(loaded, prompt: str, settings: SamplingSettings, qc: QuantConfig | None = None):
    """The same generation on the emulator and on the Lava graph (closed afterwards):
    (emulator run, its tokens, Lava run, its tokens)."""
    emulator = make_backend("emulator", loaded, qc)
    lava = make_backend("lava", loaded, qc)
    try:
        e_run, e_stream = emulator.generate(prompt, settings)
        e_tokens = [t.token_id for t in e_stream]
        l_run, l_stream = lava.generate(prompt, settings)
        l_tokens = [t.token_id for t in l_stream]
    finally:
        lava.close()
    return e_run, e_tokens, l_run, l_tokens


def _assert_same_site_codes(e_probe, l_probe) -> None:
    """Every site with recorded codes holds the same integers in both runs."""
    for key, record in e_probe.sites.items():
        if record.codes:
            assert torch.equal(l_probe.site_codes(key), e_probe.site_codes(key)), key


def _dense_probe(loaded, prompt: str, settings: SamplingSettings):
    """The probe of a dense (default QuantConfig) emulator run of the same generation."""
    run, stream = make_backend("emulator", loaded).generate(prompt, settings)
    list(stream)
    return run.probe


def test_lava_generation_is_bit_exact_with_the_emulator():
    loaded = _smallest_sample_model()
    settings = SamplingSettings(max_new_tokens=8, temperature=0.9, top_k=20, seed=11)
    e_run, e_tokens, l_run, l_tokens = _generate_on_both(loaded, "Once upon a", settings)
    assert len(l_tokens) == 8
    assert l_tokens == e_tokens
    e_probe, l_probe = e_run.probe, l_run.probe
    assert l_probe.tokens() == e_probe.tokens() == len(e_run.all_ids)
    integer_sites = [k for k, r in e_probe.sites.items() if r.kind != "host"]
    assert len(integer_sites) > 100
    assert list(l_probe.sites) == list(e_probe.sites)  # same sites, reported in the same order
    for key in integer_sites:
        if e_probe.sites[key].codes:
            assert torch.equal(l_probe.site_codes(key), e_probe.site_codes(key)), key
        if e_probe.has_values(key):  # the same scales: the same dequantized tensors
            assert torch.equal(l_probe.site_values(key), e_probe.site_values(key)), key
        assert torch.equal(torch.cat(l_probe.sites[key].clipped), torch.cat(e_probe.sites[key].clipped)), key
    # Lava's activity table comes from the counts its processes made of what their ports sent
    # (PortActivityProbe raises if a group reported none), the emulator's from its site codes.
    assert isinstance(l_probe, PortActivityProbe) and not isinstance(e_probe, PortActivityProbe)
    assert len(l_probe.port_messages) == len(e_probe.core_map.table.unique(["layer", "group"]))
    assert l_probe.activity().equals(e_probe.activity())


@pytest.mark.parametrize("cum_error", [False, True])
def test_lava_element_wise_messaging_is_bit_exact_with_the_emulator(cum_error):
    """Issue 19, every sending group: the projection outputs and the residual stream sent as sigma-delta
    and thresholded messages at vth > 0 (the receivers read the Sigma of the deltas, not the codes),
    with the BitLinear inputs too: the same tokens, site codes, messages and synaptic ops as the emulator."""
    loaded = _smallest_sample_model()
    qc = QuantConfig().with_overrides({
        "messaging_ifg_out": "delta", "vth_ifg_out": 12, "messaging_o_out": "delta", "vth_o_out": 2,
        "messaging_gate_out": "threshold", "vth_gate_out": 10, "messaging_down_out": "delta", "vth_down_out": 3,
        "messaging_residual": "delta", "vth_residual": 2, "messaging_o": "delta", "vth_o": 3,
        "messaging_cum_error": cum_error,
    })
    settings = SamplingSettings(max_new_tokens=3, temperature=0.0)
    e_run, e_tokens, l_run, l_tokens = _generate_on_both(loaded, "Once upon", settings, qc)
    assert l_tokens == e_tokens
    e_probe, l_probe = e_run.probe, l_run.probe
    assert l_probe.tokens() == e_probe.tokens() >= 4
    _assert_same_site_codes(e_probe, l_probe)
    for key, record in e_probe.sites.items():
        if record.kind == "host" and e_probe.has_values(key):  # the logits: the LM head read the same final-norm codes
            assert torch.equal(l_probe.site_values(key), e_probe.site_values(key)), key
    assert l_probe.activity().equals(e_probe.activity())
    for group, (messages, synops) in e_probe.group_activity().items():  # per neuron: what each one sent
        l_messages, l_synops = l_probe.group_activity()[group]
        assert np.array_equal(l_messages, messages) and np.array_equal(l_synops, synops), group
    # the thresholds changed what the receivers read: a dense run computes other codes
    dense = _dense_probe(loaded, "Once upon", settings)
    assert not torch.equal(dense.site_codes("layers.0.mlp_norm"), e_probe.site_codes("layers.0.mlp_norm"))


@pytest.fixture()
def without_lava_loihi(monkeypatch):
    """This machine as if Intel's lava-loihi were not installed (true here; not on an INRC host)."""
    import lava.utils.loihi

    monkeypatch.setattr(lava.utils.loihi, "is_installed", lambda *a, **k: False)
    backends.status_of.cache_clear()
    yield
    backends.status_of.cache_clear()


def test_lava_event_driven_messaging_is_bit_exact_with_the_emulator():
    """Issue 19: sigma-delta (with and without threshold crossings held back) and threshold messaging in
    the per-group Lava graph: the same tokens, site codes, messages and synaptic ops as the emulator."""
    loaded = _smallest_sample_model()
    qc = QuantConfig().with_overrides({
        "messaging_ifg": "delta", "vth_ifg": 6, "messaging_o": "delta", "vth_o": 3,
        "messaging_gate": "threshold", "vth_gate": 9, "messaging_down": "delta", "vth_down": 5,
    })
    settings = SamplingSettings(max_new_tokens=2, temperature=0.0)
    e_run, e_tokens, l_run, l_tokens = _generate_on_both(loaded, "Once", settings, qc)
    assert l_tokens == e_tokens
    e_probe, l_probe = e_run.probe, l_run.probe
    assert l_probe.tokens() == e_probe.tokens() >= 3
    _assert_same_site_codes(e_probe, l_probe)
    e_activity, l_activity = e_probe.activity(), l_probe.activity()
    assert l_activity.equals(e_activity)
    # the thresholds held messages back: fewer than a dense run of the same model sends
    assert e_activity["messages"].sum() < _dense_probe(loaded, "Once", settings).activity()["messages"].sum()


def test_loihi2_hardware_is_reported_unavailable_with_the_reason(without_lava_loihi):
    status = status_of("loihi2")
    assert not status.available
    assert "lava-loihi" in status.reason and "not on PyPI" in status.reason
    assert status_of("lava").available


def test_hardware_status_agrees_with_this_machine():
    """Passes here (no lava-loihi) and on a host with lava-loihi and a configured Loihi 2 system."""
    from lava.utils.loihi import is_installed

    status = status_of("loihi2")
    configured = any(os.environ.get(var) for var in backends.HOST_VARIABLES)
    assert status.available == (is_installed() and configured)
    if not is_installed():
        assert "not on PyPI" in status.reason
    elif not configured:
        assert "no Loihi 2 host is configured" in status.reason


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_lava_worker_reports_failures_and_leaves_no_processes(tiny_checkpoint):
    """A failing call comes back as a clear error (no hang, worker still usable); a dead worker is
    reported as such; closing removes the worker and every Lava runtime process it started."""
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    lava = LavaLM(emulator.integer)
    worker = lava.graph
    pgid = worker._process.pid
    try:
        ids = torch.tensor([[3, 4, 5]])
        expected, _ = emulator.integer(ids)
        with pytest.raises(LavaBackendError, match="set the state") as failure:
            worker.set_state([np.zeros(7)])  # wrong shape: fails inside the worker
        assert "Traceback" not in str(failure.value) and "reshape" in failure.value.worker_traceback
        logits, _ = lava(ids)
        assert torch.equal(logits, expected)  # the failure did not break the graph
        assert _group_alive(pgid)
    finally:
        lava.close()
    assert not worker._process.is_alive()
    assert not _group_alive(pgid)
    with pytest.raises(LavaBackendError, match="closed"):
        lava(ids)


def test_a_killed_lava_worker_is_an_error_not_a_hang(tiny_checkpoint):
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    with LavaLM(emulator.integer) as lava:
        os.kill(lava.graph._process.pid, signal.SIGKILL)
        with pytest.raises(LavaBackendError, match="ended unexpectedly"):
            lava(torch.tensor([[3]]))


def test_hardware_detection_says_what_is_missing(monkeypatch):
    """With lava-loihi faked present: first the missing host is named, then the backend is offered."""
    import lava.utils.loihi

    monkeypatch.setattr(lava.utils.loihi, "is_installed", lambda *a, **k: True)
    for var in backends.HOST_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    ok, why = backends.entry_of("loihi2").check()
    assert not ok and "no Loihi 2 host is configured" in why and "SLURM" in why
    monkeypatch.setenv("SLURM", "1")
    ok, why = backends.entry_of("loihi2").check()
    assert ok and "Loihi2HwCfg" in why


def test_run_configs_per_target():
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg

    from inspector.backends.lava.graph import run_config

    assert isinstance(run_config("sim"), Loihi2SimCfg)
    hardware = run_config("loihi2")
    assert isinstance(hardware, Loihi2HwCfg) and not isinstance(hardware, Loihi2SimCfg)
    with pytest.raises(ValueError, match="no Lava target"):
        run_config("gpu")


def test_make_backend_refuses_loihi2_without_the_stack(tiny_checkpoint, without_lava_loihi):
    with pytest.raises(BackendUnavailableError, match="lava-loihi"):
        make_backend("loihi2", load_checkpoint(tiny_checkpoint))
    with pytest.raises(ValueError, match="no backend 'gpu'"):
        make_backend("gpu", load_checkpoint(tiny_checkpoint))


def test_one_live_lava_graph_at_a_time(tiny_checkpoint):
    """Starting a second Lava backend closes the first one's graph; using the first again restarts
    it and continues from the state the host holds, with the emulator's bits."""
    loaded = load_checkpoint(tiny_checkpoint)
    first, second = make_backend("lava", loaded), make_backend("lava", loaded)
    emulator = make_backend("emulator", loaded)
    ids = torch.tensor([[3, 4, 5, 6]])
    try:
        step_first = first.step_fn(None)
        _, state = step_first(ids[:, :2])
        graph_first = first.lava()
        second.step_fn(None)(ids[:, :1])
        assert graph_first.closed and not second.lava().closed
        logits, _ = step_first(ids[:, 2:], state)  # restarts the first graph, loads the state
        expected, _ = emulator.integer(ids)
        assert torch.equal(logits, expected[:, 2:])
        assert second._lava.closed and not first._lava.closed
    finally:
        first.close()
        second.close()


def test_cli_run_on_lava_writes_the_emulators_traces(tiny_checkpoint, tmp_path, capsys):
    import polars as pl

    from inspector.cli import main as cli_main

    outputs = {}
    for backend in ("emulator", "lava"):
        argv = ["run", "--model", str(tiny_checkpoint), "--prompt", "To be", "--tokens", "5",
                "--backend", backend, "--out", str(tmp_path / backend)]
        assert cli_main(argv) == 0
        outputs[backend] = capsys.readouterr().out
    assert outputs["lava"] == outputs["emulator"]
    for table in ("activity", "saturation"):
        lava = pl.read_parquet(tmp_path / "lava" / f"{table}.parquet")
        assert lava.equals(pl.read_parquet(tmp_path / "emulator" / f"{table}.parquet")), table


def test_lava_refuses_a_graph_that_does_not_fit_in_memory(tiny_checkpoint, monkeypatch):
    loaded = load_checkpoint(tiny_checkpoint)
    need = backends.lava_memory_estimate(loaded.model.num_parameters(), loaded.config.num_hidden_layers)
    monkeypatch.setattr(backends, "available_bytes", lambda: need - 1)
    backend = make_backend("lava", loaded)
    with pytest.raises(BackendUnavailableError, match="would need about") as refused:
        list(backend.generate("To be", SamplingSettings(2, 0.0, 0, 0))[1])
    assert "emulator computes the same bits" in str(refused.value)
    monkeypatch.setattr(backends, "available_bytes", lambda: need)
    backends.require_lava_memory(loaded.model.num_parameters(), loaded.config.num_hidden_layers)
    # the measured points the estimate must cover
    assert backends.lava_memory_estimate(3_940_000, 4) >= 1.03 * 2**30
    assert backends.lava_memory_estimate(370_000_000, 24) >= 10 * 2**30


def test_lava_runs_take_turns_and_graphs_close_when_unused(tiny_checkpoint):
    """Two runs on two Lava backends at once: the second waits (told its position) while the first
    holds the simulator for its whole generation, so no graph restarts per token; both give the
    emulator's tokens; when their users detach, no Lava process is left."""
    import threading
    import time

    from inspector.backends.lava.backend import SIMULATOR, LavaBackend

    loaded = load_checkpoint(tiny_checkpoint)
    settings = SamplingSettings(4, 0.9, 20, 5)
    first, second = make_backend("lava", loaded), make_backend("lava", loaded)
    expected = [t.token_id for t in make_backend("emulator", loaded).generate("To be", settings)[1]]
    first.attach("tab-1")
    second.attach("tab-2")
    waits: dict[str, list[int]] = {"first": [], "second": []}
    tokens: dict[str, list[int]] = {}
    holding = threading.Event()

    def run(name: str, backend) -> None:
        _, stream = backend.generate("To be", settings, on_wait=waits[name].append)
        out = []
        for token in stream:
            holding.set()
            out.append(token.token_id)
            time.sleep(0.3)  # slow enough that the other run must wait for the simulator
        tokens[name] = out

    one = threading.Thread(target=run, args=("first", first))
    one.start()
    assert holding.wait(120)
    two = threading.Thread(target=run, args=("second", second))
    two.start()
    one.join(300)
    two.join(300)
    assert tokens == {"first": expected, "second": expected}
    assert waits["first"] == [] and waits["second"] and set(waits["second"]) == {1}  # "position 1"
    assert not SIMULATOR.busy and SIMULATOR.waiting == 0
    graph = second._lava
    pgid = graph.graph._process.pid
    assert _group_alive(pgid) and first._lava.closed  # one graph at a time: the first was closed for the second
    first.detach("tab-1")
    assert _group_alive(pgid)  # still used by tab-2
    second.detach("tab-2")
    assert graph.closed and not graph.graph._process.is_alive() and not _group_alive(pgid)
    assert LavaBackend.live_graphs() == 0


def test_analysis_reports_its_place_in_the_lava_queue(tiny_checkpoint):
    """While another run holds the simulator, an analysis on Lava reports ("wait", position) to its
    progress callback (the app shows "Waiting for the Lava simulator (position N)"), then runs."""
    import threading

    from inspector.backends.lava.backend import SIMULATOR
    from inspector.compare.analysis import analyze

    backend = make_backend("lava", load_checkpoint(tiny_checkpoint))
    held, release = threading.Event(), threading.Event()

    def other_session() -> None:
        with SIMULATOR.hold():
            held.set()
            release.wait(60)

    holder = threading.Thread(target=other_session)
    holder.start()
    assert held.wait(10)
    phases: list[tuple[str, int]] = []

    def on_progress(phase: str, done: int, total: int) -> None:
        phases.append((phase, done))
        if phase == "wait" and len([p for p in phases if p[0] == "wait"]) >= 2:
            release.set()  # the other run finishes once we have been told our place twice

    try:
        timer = threading.Timer(30, release.set)  # never hang the suite
        timer.start()
        analysis = analyze(backend, "To be", SamplingSettings(2, 0.0, 0, 0), on_progress)
        timer.cancel()
    finally:
        release.set()
        holder.join()
        backend.close()
    assert ("wait", 1) in phases
    assert phases.index(("wait", 1)) < phases.index(("integer", 1))  # waited first, then generated
    assert len(analysis.run.tokens) == 2
