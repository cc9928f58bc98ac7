"""Sweeps: knobs come from the QuantConfig dataclass, a crippled knob ranks first, Ray runs stream
into Parquet, resume, record failures, leave no Ray running; the search's winner loads everywhere."""

from __future__ import annotations

import dataclasses
import json
import threading

import polars as pl
import pytest

from inspector.cli import main as cli_main
from inspector.lm.checkpoint import load_checkpoint
from inspector.quant.config import QuantConfig, QuantConfigError
from inspector.quant.files import load_quant_config, quant_spec, save_quant_config
from inspector.sweep.evaluate import Evaluator, Point, SweepSpec, held_out_ids
from inspector.sweep.results import failed_points, pareto_front, sensitivity_table
from inspector.sweep.runner import RESULTS_FILE, SweepRunner, load_results
from inspector.sweep.study import WINNER_FILE, point, run_sweep, sensitivity_points
from tests.conftest import TINY_TEXT


def evaluate_local(spec: SweepSpec, points: list[Point]) -> list[dict]:
    """All points in this process, without Ray: the metrics without the runner."""
    evaluator = Evaluator(spec)
    return [evaluator.evaluate(p) for p in points]


@pytest.fixture()
def spec(tiny_checkpoint) -> SweepSpec:
    loaded = load_checkpoint(tiny_checkpoint)
    ids, chars = held_out_ids(loaded, TINY_TEXT, 32)
    return SweepSpec(loaded, ids, chars, QuantConfig(), calibration_text=TINY_TEXT)


def test_an_unreachable_cluster_is_a_clear_error_at_once(spec, tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    runner = SweepRunner(spec, tmp_path, address="127.0.0.1:1")
    with pytest.raises(Exception, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        runner.run([point("base", "", spec.base)])
    assert not ray.is_initialized()


def test_sensitivity_points_and_a_crippled_knob_ranks_first(spec):
    points = sensitivity_points(spec.base, 2, per_layer=True, lower={"state_bits": 4})
    labels = [p.label for p in points]
    assert labels[0] == "base" and "state_bits=4" in labels and "state_bits=4 @ layer 1" in labels
    assert "residual_bits=6 @ layer 0" not in labels  # the residual width is shared by all layers
    with pytest.raises(Exception, match="not a swept QuantConfig knob"):
        sensitivity_points(spec.base, 2, lower={"message_bits": 8})
    rows = evaluate_local(spec, [p for p in points if p.layer < 0])
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    table = sensitivity_table(pl.DataFrame(rows, infer_schema_length=None))
    assert table.row(0, named=True)["knob"] == "state_bits"
    assert table.row(0, named=True)["lower_dkl"] > 0
    base = rows[0]
    assert base["cores"] > 0 and base["chips"] >= 1 and base["energy_per_token_uj"] > 0
    assert 0 <= base["top1_agreement"] <= 1 and base["mean_kl"] >= 0


def test_a_narrower_state_maps_onto_no_more_cores(spec):
    rows = evaluate_local(spec, [point("base", "", spec.base), point("lower", "state_bits", spec.base, 8)])
    assert rows[1]["cores"] <= rows[0]["cores"]


def test_ray_sweep_streams_resumes_and_records_failures(spec, tmp_path):
    ray = pytest.importorskip("ray")
    points = [
        point("base", "", spec.base),
        point("lower", "act_bits", spec.base, 6),
        point("lower", "state_bits", spec.base, 30),  # wider than a register: rejected, recorded
        point("lower", "internal_bits", spec.base, 10, layer=1),
    ]
    seen = []
    already = ray.is_initialized()
    with SweepRunner(spec, tmp_path, workers=1) as runner:
        rows = runner.run(points, on_result=lambda row, done, total: seen.append((row["label"], done, total)))
    assert ray.is_initialized() == already  # the runner shut down the instance it started, and only that
    assert [s[1] for s in seen] == [1, 2, 3, 4] and all(s[2] == 4 for s in seen)
    frame = load_results(tmp_path)
    assert frame.height == 4
    failed = failed_points(frame)
    assert failed.height == 1 and "state_bits=30" in failed["error"][0] and "register" in failed["error"][0]
    assert rows[3]["status"] == "ok" and rows[3]["layer"] == 1
    # a re-run skips the points already there: nothing is evaluated again, Ray is not even started
    before = {r["point_id"]: r["seconds"] for r in frame.to_dicts() if r["status"] == "ok"}
    with SweepRunner(spec, tmp_path, workers=1) as runner:
        runner.run([p for p in points if p.knob != "state_bits"])
        assert not runner._started_ray
    after = {r["point_id"]: r["seconds"] for r in load_results(tmp_path).to_dicts() if r["status"] == "ok"}
    assert after == before
    # another text in the same directory is refused instead of mixing results
    other = dataclasses.replace(spec, ids=spec.ids[:10])
    with pytest.raises(Exception, match="another model, text"):
        SweepRunner(other, tmp_path)


@pytest.fixture(scope="module")
def shared_ray():
    """One small Ray instance for the tests that only use it (a sweep reuses a running instance)."""
    ray = pytest.importorskip("ray")
    from inspector.sweep.runner import REPO_ROOT

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    yield ray
    ray.shutdown()


def test_two_workers_run_points_side_by_side_and_a_stop_ends_only_the_busy_ones(spec, tmp_path, shared_ray):
    points = [point("lower", knob, spec.base, value) for knob, value in
              (("act_bits", 6), ("act_bits", 7), ("internal_bits", 10), ("internal_bits", 12),
               ("lut_bits", 10), ("lut_bits", 12), ("spike_bits", 6), ("spike_bits", 7))]
    with SweepRunner(spec, tmp_path, workers=2) as runner:
        pids = runner.start()  # both workers built their Evaluator before any point
        assert len(set(pids)) == 2
        rows = runner.run(points[:6])
    assert all(r["status"] == "ok" for r in rows) and {r["pid"] for r in rows} == set(pids)
    for r in rows:
        assert r["started_at"] <= r["finished_at"] and 0 <= r["cpu_seconds"]
    # side by side: some point of one worker ran while a point of the other was running
    assert any(a["pid"] != b["pid"] and a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
               for a in rows for b in rows)

    stop = threading.Event()
    with SweepRunner(spec, tmp_path / "stopped", workers=2) as runner:
        got = runner.run(points, on_result=lambda row, done, total: stop.set(), stop=stop)
        assert len(got) == 1 and len(runner._pool) < 2  # the workers holding points were ended
        rest = runner.run(points)  # new workers replace the ended ones; finished points are kept
    assert len(rest) == len(points) and all(r["status"] == "ok" for r in rest)
    got_ids = {g["point_id"] for g in got}
    assert {r["point_id"]: r["seconds"] for r in got} == {r["point_id"]: r["seconds"] for r in rest if r["point_id"] in got_ids}


def test_a_worker_that_dies_is_replaced_and_its_point_recorded_as_failed(spec, tmp_path, shared_ray):
    points = [point("lower", "act_bits", spec.base, bits) for bits in range(5, 13)]
    with SweepRunner(spec, tmp_path, workers=2) as runner:
        worker_of = dict(zip(runner.start(), runner._pool, strict=True))
        killed = []

        def kill_after_first(row, done, total):
            if not killed:  # that worker is holding its next points: one running, one waiting
                killed.append(row["pid"])
                shared_ray.kill(worker_of[row["pid"]], no_restart=True)

        rows = runner.run(points, on_result=kill_after_first)
    assert len(rows) == len(points)  # every point has a row: none lost with the dead worker
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) <= 1 and all("Ray task failed" in r["error"] for r in failed)
    assert {r["pid"] for r in rows if r["status"] == "ok"} - set(killed)  # the others ran elsewhere


def test_sweep_search_writes_a_winner_that_loads(spec, tmp_path, shared_ray):
    outcome = run_sweep(spec, tmp_path, budget_pct=0.0, per_layer=False, search_rounds=2)
    assert shared_ray.is_initialized()  # a sweep leaves an instance it did not start alone
    assert outcome.search is not None and outcome.points >= 20
    winner = load_quant_config(tmp_path / WINNER_FILE)
    assert winner == outcome.search.winner
    for step in outcome.search.steps:
        assert step["delta_bpc_pct"] <= 0.0  # the budget holds at every accepted step
    front = pareto_front(load_results(tmp_path))
    assert front.height >= 1
    assert (front["delta_bpc_pct"].diff().drop_nulls() < 0).all()  # cheaper points lose more


def test_pareto_front_keeps_only_undominated_points():
    frame = pl.DataFrame({
        "status": ["ok"] * 5, "layer": [-1] * 5,
        "energy_per_token_uj": [1.0, 2.0, 3.0, 2.5, 4.0],
        "delta_bpc_pct": [5.0, 1.0, 0.5, 2.0, 0.6],
    })
    assert pareto_front(frame)["energy_per_token_uj"].to_list() == [1.0, 2.0, 3.0]


def test_quant_config_files_round_trip_and_bad_files_say_why(tmp_path):
    qc = QuantConfig(state_bits=16, act_bits=6)
    path = save_quant_config(qc, tmp_path / "q.json", note="test")
    assert load_quant_config(path) == qc
    assert quant_spec(str(path)) == qc and quant_spec("state_bits=16,act_bits=6") == qc and quant_spec("default") == QuantConfig()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(QuantConfigError, match="not valid JSON"):
        load_quant_config(tmp_path / "bad.json")
    (tmp_path / "unknown.json").write_text(json.dumps({"quant_config": {"warp_bits": 3}}))
    with pytest.raises(QuantConfigError, match="warp_bits"):
        load_quant_config(tmp_path / "unknown.json")
    with pytest.raises(QuantConfigError, match="cannot read"):
        load_quant_config(tmp_path / "missing.json")
    traces = tmp_path / "traces"  # a saved run: its run.json records the QuantConfig
    traces.mkdir()
    (traces / "run.json").write_text(json.dumps({"prompt": "x", "quant_config": qc.to_dict()}))
    assert load_quant_config(traces) == qc


def test_cli_sweep_then_quant_file(tiny_checkpoint, tmp_path, capsys, shared_ray):
    text = tmp_path / "held_out.txt"
    text.write_text(TINY_TEXT)
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(tiny_checkpoint), "--text", str(text), "--out", str(out), "--workers", "1",
            "--max-tokens", "24", "--no-per-layer", "--no-search", "--lower", "state_bits=4"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "state_bits" in printed and (out / RESULTS_FILE).is_file()
    save_quant_config(QuantConfig(state_bits=16), tmp_path / "q.json")
    assert cli_main(
        ["diff", "--model", str(tiny_checkpoint), "--text", str(text), "--quant-file", str(tmp_path / "q.json"), "--local"],
    ) == 0
    assert "cumulative_sqnr_db" in capsys.readouterr().out
    assert cli_main(
        ["diff", "--model", str(tiny_checkpoint), "--text", str(text), "--quant-file", str(tmp_path / "none.json")],
    ) == 2
    assert cli_main(["sweep", "--model", str(tiny_checkpoint), "--out", str(out)]) == 2  # no held-out text known
    assert "--text" in capsys.readouterr().err
    # A/B of a saved run (its traces directory) against overrides
    traces = tmp_path / "traces"
    assert cli_main(["run", "--model", str(tiny_checkpoint), "--prompt", "To be", "--tokens", "2", "--out", str(traces),
                     "--no-tensors", "--quant", "state_bits=16"]) == 0
    capsys.readouterr()
    assert cli_main(["ab", "--model", str(tiny_checkpoint), "--text", str(text), "--a", str(traces), "--b", "state_bits=12",
                     "--max-tokens", "16"]) == 0
    assert "'state_bits': (16, 12)" in capsys.readouterr().out
