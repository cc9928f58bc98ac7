"""The Sensitivity page and the Quantization error page's new sections, driven with AppTest."""

from __future__ import annotations

import pytest

from inspector.lm.checkpoint import load_checkpoint
from inspector.quant.config import QuantConfig
from inspector.sweep.evaluate import SweepSpec, held_out_ids
from inspector.sweep.runner import ResultStore
from inspector.sweep.study import sensitivity_points
from inspector.ui import sweeps
from inspector.ui.text import unescaped
from tests.conftest import TINY_TEXT
from tests.test_app import _app, _open_local
from tests.test_sweep import evaluate_local


@pytest.fixture()
def app(tiny_checkpoint):
    at = _open_local(_app(), str(tiny_checkpoint), tokens=4)
    assert not at.exception, at.exception
    return at


def test_sensitivity_page_runs_a_sweep_in_the_background(app, tmp_path):
    app.switch_page("pages/sensitivity.py").run()
    assert not app.exception, app.exception
    assert app.text_area(key="sweep_text")  # a local checkpoint has no known validation split
    app.button(key="sweep_start").click().run()
    assert any("too short" in e.value for e in app.error)  # empty text: a clear message
    app.text_area(key="sweep_text").input(TINY_TEXT).run()
    app.number_input(key="sweep_tokens").set_value(24).run()
    app.number_input(key="sweep_workers").set_value(1).run()
    app.checkbox(key="sweep_per_layer").uncheck().run()
    app.checkbox(key="sweep_search").uncheck().run()
    out = tmp_path / "sweep"
    app.text_input(key="sweep_out").input(str(out)).run()
    app.button(key="sweep_start").click().run()
    assert not app.exception, app.exception
    job = sweeps.job_for(out)
    assert job is not None
    assert job.wait(300)
    assert job.state == "done" and job.detail.phase == "finished", (job.state, job.error, job.detail.phase)
    app.run()
    assert not app.exception, app.exception
    assert len(app.get("plotly_chart")) >= 1
    assert any(m.label == "Base integer bits/char" for m in app.metric)
    knobs = app.dataframe[0].value["knob"].tolist()
    assert "state_bits" in knobs and "act_bits" in knobs


def test_sensitivity_page_opens_existing_results(app, tiny_checkpoint, tmp_path):
    loaded = load_checkpoint(tiny_checkpoint)
    ids, chars = held_out_ids(loaded, TINY_TEXT, 24)
    spec = SweepSpec(loaded, ids, chars, QuantConfig(), calibration_text=TINY_TEXT)
    store = ResultStore(tmp_path)
    for row in evaluate_local(spec, sensitivity_points(spec.base, 2, per_layer=False)[:4]):
        store.add(row)
    app.switch_page("pages/sensitivity.py").run()
    app.radio(key="sweep_source").set_value("Open existing results").run()
    app.text_input(key="sweep_open_dir").input(str(tmp_path)).run()
    assert not app.exception, app.exception
    assert len(app.get("plotly_chart")) >= 1
    app.text_input(key="sweep_open_dir").input(str(tmp_path / "nothing")).run()
    assert not app.exception
    assert any("nothing exists at this path" in unescaped(e.value) for e in app.error)


def test_quantization_error_page_local_split_and_ab(app):
    app.switch_page("pages/quantization_error.py").run()
    assert not app.exception, app.exception
    titles = [s.value for s in app.subheader]
    assert "Where the error is introduced: local vs cumulative" in titles
    app.text_input(key="ab_spec").input("state_bits=12").run()
    app.button(key="ab_button").click().run()
    assert not app.exception, app.exception
    summary = [d.value for d in app.dataframe if "metric" in d.value.columns]
    assert summary and "mean KL (nats)" in summary[0]["metric"].tolist()
    app.text_input(key="ab_spec").input("warp_bits=3").run()
    app.button(key="ab_button").click().run()
    assert not app.exception
    assert any("warp_bits" in unescaped(e.value) for e in app.error)


def test_sidebar_loads_a_quant_config_file(app, tmp_path):
    from inspector.quant.files import save_quant_config

    path = save_quant_config(QuantConfig(state_bits=6), tmp_path / "q.json")
    app.switch_page("pages/saturation.py").run()
    app.sidebar.text_input(key="q_file").input(str(path)).run()
    assert not app.exception, app.exception
    assert "6 bits" in " ".join(m.value for m in app.markdown) + " ".join(c.value for c in app.caption)
    app.sidebar.text_input(key="q_file").input(str(tmp_path / "missing.json")).run()
    assert not app.exception
    assert any("cannot read" in e.value for e in app.sidebar.error)
