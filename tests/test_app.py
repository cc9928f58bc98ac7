"""Every page of the Streamlit app, driven with AppTest on a tiny checkpoint: renders without
exceptions, widgets change what is shown, bad input shows a message instead of a traceback."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from inspector.lm.catalog import sample_models
from inspector.ui.text import unescaped
from tests.conftest import REPO, TOUR_PREDICTIONS

APP = str(REPO / "app.py")
PAGES = [
    "pages/generation.py",
    "pages/spike_activity.py",
    "pages/saturation.py",
    "pages/quantization_error.py",
    "pages/hardware.py",
    "pages/learn.py",
]


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180)


def _open_local(at: AppTest, path: str, tokens: int = 6) -> AppTest:
    at.run()
    at.sidebar.selectbox(key="model_choice").select("Local checkpoint directory…").run()
    at.sidebar.text_input(key="checkpoint_dir").input(path).run()
    at.sidebar.slider(key="max_new_tokens").set_value(tokens).run()
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [str(m.value) for m in at.metric]
    return "\n".join(parts)


@pytest.fixture()
def app(tiny_checkpoint):
    at = _open_local(_app(), str(tiny_checkpoint))
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app, page):
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert app.title[0].value
    assert len(app.get("plotly_chart")) >= 1  # the page drew real data, it did not stop early
    downloads = [b.proto.label for b in app.sidebar.get("download_button")]
    assert downloads == ["Download everything (zip)"]  # the one-click bundle, on every page


def test_generation_shows_both_models_and_token_details(app):
    assert len(app.code) >= 1  # the float model's text
    assert any("Top-1 agreement" == m.label for m in app.metric)
    table = app.dataframe[0].value
    assert len(table) == 6
    app.sidebar.slider(key="max_new_tokens").set_value(9).run()
    assert not app.exception
    assert len(app.dataframe[0].value) == 9


def test_changing_a_bit_width_reruns(app):
    app.switch_page("pages/saturation.py").run()
    before = [m.value for m in app.metric]
    app.slider(key="q_state_bits").set_value(6).run()
    assert not app.exception
    after = [m.value for m in app.metric]
    assert before != after  # six-bit states clip where 24-bit ones did not
    assert "6 bits" in _texts(app)


def test_spike_activity_widgets(app):
    app.switch_page("pages/spike_activity.py").run()
    app.selectbox(key="raster_layer").select(1).run()
    assert not app.exception
    app.selectbox(key="raster_group").select("proj_gate").run()
    assert not app.exception


def test_quantization_error_perplexity(app):
    app.switch_page("pages/quantization_error.py").run()
    app.text_area(key="ppl_text").input("To be, or not to be, that is the question").run()
    app.button(key="ppl_button").click().run()
    assert not app.exception
    assert any(m.label == "Perplexity, integer" for m in app.metric)
    assert not app.warning


def test_perplexity_box_says_when_it_cuts_the_text(app):
    """Issue 11.10."""
    app.switch_page("pages/quantization_error.py").run()
    app.text_area(key="ppl_text").input("To be, or not to be, that is the question. " * 200).run()
    app.button(key="ppl_button").click().run()
    assert not app.exception
    said = " ".join(w.value for w in app.warning)
    assert "only its first 1,024 tokens are used" in said


def test_clearing_sites_draws_nothing_and_says_so(app):
    """Issue 11.9: no sites means no lines (not all 16)."""
    app.switch_page("pages/quantization_error.py").run()
    charts = len(app.get("plotly_chart"))
    app.multiselect(key="err_sites").set_value([]).run()
    assert not app.exception
    assert any("at least one site" in i.value for i in app.info)
    assert len(app.get("plotly_chart")) == charts - 1


def test_published_sizes_have_thousands_separators(app):
    """Issue 11.11."""
    app.switch_page("pages/hardware.py").run()
    published = next(d for d in app.dataframe if "synapses" in d.value.columns and "model" in d.value.columns)
    assert '"localized"' in published.proto.columns and "synapses" in published.proto.columns


def test_spike_activity_caption_counts_fan_out(app):
    """Issue 11.7: the caption's words match what `messages` counts for norm cores."""
    app.switch_page("pages/spike_activity.py").run()
    caption = " ".join(c.value for c in app.caption)
    assert "up to three per token" in caption and "messages, not neurons" in caption


def test_learn_steps(app):
    app.switch_page("pages/learn.py").run()
    for step in app.radio(key="tour_step").options:
        app.radio(key="tour_step").set_value(step).run()
        assert not app.exception, step
        assert not app.error


def test_hardware_backend_says_why_it_is_unavailable(app, monkeypatch):
    """As on this machine, where Intel's lava-loihi is not installed (faked absent where it is)."""
    import lava.utils.loihi

    from inspector.backends.base import backend_statuses, status_of

    monkeypatch.setattr(lava.utils.loihi, "is_installed", lambda *a, **k: False)
    status_of.cache_clear()
    try:
        app.run()
        assert not app.exception
        assert "Loihi 2 hardware" not in app.sidebar.radio(key="backend").options  # it cannot be chosen
        available = [s.label for s in backend_statuses() if s.available]
        assert app.sidebar.radio(key="backend").options == available  # the registry's labels, in its order
        captions = " ".join(c.value for c in app.sidebar.caption)
        assert "lava-loihi" in captions and "not on PyPI" in captions  # and the sidebar says why, once
        assert captions.count("not on PyPI") == 1
    finally:
        status_of.cache_clear()


def test_learn_tour_points(app):
    """Issues 11 and 21, Learn tour: definitions, the itemized multiplies, messaging, SQNR, the map."""
    app.switch_page("pages/learn.py").run()
    glossary = " ".join(m.value for m in app.expander[0].markdown)
    for word in ("Neuro-core", "Message", "Synaptic operation", "Time step", "embedding", "LM head", "host"):
        assert word in glossary, word
    assert "one time step per group" in glossary  # as the Spike activity caption says
    assert len(app.get("graphviz_chart")) == 1  # the data-flow map
    step1 = " ".join(m.value for m in app.markdown)
    assert "9 RMSNorms" in step1 and "requantizations" in step1 and "f·h" in step1
    assert "Loihi 2's synapses still multiply" in step1 and "β = mean |w|" in step1
    radio = app.radio(key="tour_step")
    radio.set_value("4. Messaging").run()
    text = " ".join(m.value for m in app.markdown)
    assert "Sigma-delta" in text and "static power" in text and "Every neuron, every token" in text and "Graded spikes" in text
    radio.set_value("6. Drift").run()
    text = " ".join(m.value for m in app.markdown)
    assert "signal-to-quantization-noise ratio" in text and "10·log10" in text and "local" in text and "cumulative" in text


@pytest.mark.parametrize("step,key", TOUR_PREDICTIONS)
def test_learn_predict_then_reveal(app, step, key):
    """Issue 21.2: a step shows no answer until a prediction is picked, then says whether it was right."""
    app.switch_page("pages/learn.py").run()
    app.radio(key="tour_step").set_value(step).run()
    assert not app.exception, app.exception
    question = app.radio(key=key)
    assert question.value is None and "Predict first" in question.label
    assert not app.success and not app.info
    charts = len(app.get("plotly_chart"))
    question.set_value(question.options[0]).run()
    assert not app.exception, app.exception
    verdicts = [m.value for m in (*app.success, *app.info)]
    assert len(verdicts) == 1 and verdicts[0].startswith(("Right:", "Not quite:")), verdicts
    if key in ("predict_spike_bits", "predict_state_bits", "predict_local"):
        assert len(app.get("plotly_chart")) == charts + 1  # the sweep's chart
    app.radio(key=key).set_value(question.options[-1]).run()  # answered again from the cache
    assert not app.exception, app.exception


def _all_messages(at: AppTest) -> list[str]:
    return [m.value for kind in (at.error, at.warning, at.info, at.caption, at.markdown) for m in kind]


def test_hardware_backend_is_not_selectable_and_says_why_once(app):
    """Issue 11.12: an unavailable backend cannot be chosen; why is said once, in the sidebar."""
    from inspector.backends.base import status_of

    if status_of("loihi2").available:
        pytest.skip("a Loihi 2 system is configured here")
    assert "Loihi 2 hardware" not in app.sidebar.radio(key="backend").options
    for page in PAGES[:2]:
        app.switch_page(page).run()
        said = [m for m in _all_messages(app) if "lava-loihi" in m or "Loihi2HwCfg" in m]
        assert len(said) == 1, said
        assert "Loihi 2 hardware" in said[0] and "not available here" in said[0]


def test_generation_numbers_tokens_from_the_prompt(app):
    """Issue 11.8/14/17: one index convention; a slider (not a button per token); a plain heading."""
    import json

    app.sidebar.slider(key="max_new_tokens").set_value(8).run()
    table = app.dataframe[0].value
    first = int(table["token"].iloc[0])
    assert first >= 1 and list(table["token"]) == list(range(first, first + 8))  # first = number of prompt tokens
    assert {"piece", "text", "kl_nats", "same_top1"} <= set(table.columns)
    assert not any(" " in c for c in table.columns)
    picker = app.select_slider(key="token_pick")
    assert list(picker.options)[0].startswith(f"{first} ·") and len(picker.options) == 8
    assert len(app.get("pills")) == 0 and len(app.button) <= 2
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")]
    assert any(f"produced token {first}" in t and f"token {first - 1}" in t for t in titles), titles
    assert all(f"produced token {first}" in t for t in titles), titles
    picker.set_value(picker.options[3]).run()
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")]
    assert any(f"after token {first + 2}: they produced token {first + 3}" in t for t in titles), titles
    assert any(h.value == "Integer model · Emulator (bit-accurate)" for h in app.subheader)
    assert not any("((" in h.value or "))" in h.value for h in app.subheader)


def test_generation_perplexities_say_which_text(app):
    """Issue 11.6: each model on its own text, and both on the same text, labeled."""
    metrics = {m.label: float(m.value) for m in app.metric if m.label.startswith("Perplexity")}
    assert set(metrics) == {
        "Perplexity, float (own text)", "Perplexity, integer (own text)",
        "Perplexity, float (integer's text)", "Perplexity, integer (integer's text)",
    }
    # the integer model's own continuation and "its text" are the same tokens under the same logits
    assert metrics["Perplexity, integer (own text)"] == pytest.approx(metrics["Perplexity, integer (integer's text)"], rel=1e-3)
    float_own = metrics["Perplexity, float (own text)"]
    app.slider(key="q_state_bits").set_value(6).run()
    assert not app.exception
    after = {m.label: float(m.value) for m in app.metric if m.label.startswith("Perplexity")}
    assert after["Perplexity, float (own text)"] == float_own  # QuantConfig does not touch the float model


@pytest.mark.parametrize(
    "key,value,words",
    [("seed", "99999999999", "seed"), ("top_k", "99999", "top-k"), ("seed", "-1", "seed"),
     ("seed", "1e30", "not a whole number")],
)
def test_out_of_range_numbers_are_explained_and_hide_old_results(app, key, value, words):
    """Issue 11.15: the message is where the user looks, and stale results are not shown."""
    assert len(app.get("plotly_chart")) >= 1
    app.sidebar.text_input(key=key).input(value).run()
    assert not app.exception
    top = [unescaped(e.value) for e in app.main.error]
    assert top and words in top[0].lower() and "nothing was run" in top[0].lower()
    assert any(words in unescaped(e.value).lower() for e in app.sidebar.error)  # next to the box too
    assert app.slider(key="q_state_bits")  # the rest of the sidebar stays drawn and usable
    assert len(app.get("plotly_chart")) == 0 and len(app.metric) == 0 and len(app.dataframe) == 0
    app.sidebar.text_input(key=key).input("5").run()
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) >= 1


def test_settings_are_written_to_the_url(app):
    """Issue 11.16: a changed setting appears in the query string, so a reload restores it."""
    app.sidebar.text_input(key="seed").input("7").run()
    app.slider(key="q_state_bits").set_value(12).run()
    assert app.query_params["seed"] == "7"
    assert app.query_params["state_bits"] == "12"
    assert app.query_params["tokens"] == "6"
    assert app.query_params["model"] == "local" and app.query_params["path"]


def test_settings_are_read_from_the_url(tiny_checkpoint):
    at = _app()
    at.query_params.update(
        {"model": "local", "path": str(tiny_checkpoint), "tokens": "5", "seed": "11", "temperature": "0", "state_bits": "16",
         "prompt": "Whether 'tis"}
    )
    at.run()
    assert not at.exception, at.exception
    assert at.sidebar.text_input(key="seed").value == "11"
    assert at.sidebar.slider(key="max_new_tokens").value == 5
    assert at.slider(key="q_state_bits").value == 16
    assert at.sidebar.text_area[0].value == "Whether 'tis"
    assert len(at.dataframe[0].value) == 5
    assert not at.warning


def test_hostile_url_values_fall_back_with_a_message(tiny_checkpoint):
    at = _app()
    at.query_params.update(
        {"model": "local", "path": str(tiny_checkpoint), "tokens": "99999", "seed": "abc", "temperature": "nan",
         "state_bits": "-3", "backend": "loihi2", "headroom": "1e308", "pow2": "<script>", "x" * 40: "1"}
    )
    at.run()
    assert not at.exception, at.exception
    warnings = " ".join(unescaped(w.value) for w in at.sidebar.warning)
    for name in ("tokens from", "seed from", "temperature from", "state_bits from", "headroom from", "pow2 from",
                 "Unknown link parameters"):
        assert name in warnings, name
    assert "Loihi 2 hardware" in warnings or "backend from" in warnings
    assert "<script>" in warnings and "\\<script\\>" in " ".join(w.value for w in at.sidebar.warning)  # shown as text
    assert at.sidebar.slider(key="max_new_tokens").value == 32  # the default
    assert at.sidebar.text_input(key="seed").value == "0"
    assert not at.error


def _page_values(at: AppTest) -> tuple[list[str], list[str]]:
    """The generated texts (code, markdown) and the metrics of a page: what must not depend on the backend."""
    return [c.value for c in at.code] + [m.value for m in at.markdown], [f"{m.label}={m.value}" for m in at.metric]


def test_generation_and_spike_activity_on_the_lava_backend(app):
    """Backend = Lava simulation: the same text and the same activity as the emulator, bit for bit."""
    on_emulator = _page_values(app)
    app.switch_page("pages/spike_activity.py").run()
    spikes_on_emulator = _page_values(app)
    app.switch_page("pages/generation.py").run()
    app.sidebar.radio(key="backend").set_value("Lava simulation").run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert any("Integer model · Lava simulation" == h.value for h in app.subheader)
    assert _page_values(app) == on_emulator
    assert len(app.get("plotly_chart")) >= 1
    app.switch_page("pages/spike_activity.py").run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert len(app.get("plotly_chart")) >= 1
    assert _page_values(app) == spikes_on_emulator
    from inspector.backends.lava.backend import LavaBackend

    live = LavaBackend._live() if LavaBackend._live is not None else None
    assert live is not None and not live.closed  # the run really went through a Lava graph
    for page in PAGES:
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
        assert not app.error, (page, [e.value for e in app.error])


def test_bad_checkpoint_path_shows_an_error(tmp_path):
    at = _app()
    at.run()
    at.sidebar.selectbox(key="model_choice").select("Local checkpoint directory…").run()
    at.sidebar.text_input(key="checkpoint_dir").input(str(tmp_path / "missing")).run()
    assert not at.exception
    assert "not a directory" in unescaped(at.sidebar.error[0].value)


def test_corrupt_checkpoint_shows_an_error(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").write_bytes(b"garbage")
    at = _app()
    at.run()
    at.sidebar.selectbox(key="model_choice").select("Local checkpoint directory…").run()
    at.sidebar.text_input(key="checkpoint_dir").input(str(tiny_checkpoint)).run()
    assert not at.exception
    assert "not a valid safetensors file" in unescaped(at.sidebar.error[0].value)


def test_empty_prompt_shows_an_error(app):
    app.sidebar.text_area[0].input("   ").run()
    assert not app.exception
    assert "empty" in app.error[0].value


@pytest.mark.skipif(not sample_models(), reason="no sample model trained yet")
def test_default_sample_model_runs():
    at = _app()
    at.run()
    at.sidebar.slider(key="max_new_tokens").set_value(5).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 5


def test_saturation_per_core(app):
    app.switch_page("pages/saturation.py").run()
    options = app.selectbox(key="sat_core").options
    assert len(options) >= 2  # "all" plus at least one MLGRU core
    core_id = options[1].split()[1]  # "core 2 (neurons 0-31)"
    app.selectbox(key="sat_core").set_value(core_id).run()
    assert not app.exception
    app.selectbox(key="sat_layer").select(1).run()
    assert not app.exception


def test_quant_preset_paper_study_reaches_the_integer_model(app):
    """Choosing the paper-study preset in the sidebar runs the integer model with the study's scale rule."""
    app.sidebar.selectbox(key="q_preset").select("paper-study").run()
    assert not app.exception, app.exception
    assert app.sidebar.selectbox(key="q_scale_rule").value == "study"
    assert app.sidebar.slider(key="q_internal_bits").value == 16
    assert any("study" in c.value for c in app.sidebar.caption)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _number(value: str) -> float:
    return float(value.split()[0].replace(",", "").rstrip("%"))


def test_hardware_what_ifs_and_presets_update_live(app, monkeypatch, tmp_path):
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    app.switch_page("pages/hardware.py").run()
    assert not app.exception, app.exception
    assert app.radio(key="cost_preset").value == "Loihi 2, fitted to the paper's 370M measurement"  # the default
    assert app.radio(key="hw_layout").value == "one-block-per-chip"
    app.radio(key="cost_preset").set_value("Loihi (2018 figures)").run()
    before = _metrics(app)
    app.number_input(key="hw_max_neurons_per_core").set_value(10).run()
    assert not app.exception and not app.error
    small = _metrics(app)
    assert _number(small["Neuro-cores"]) > _number(before["Neuro-cores"])
    # fewer neurons per core: shorter stages
    assert _number(small["Generation, tokens/s"]) > _number(before["Generation, tokens/s"])
    app.toggle(key="hw_share").set_value(True).run()
    shared = _metrics(app)
    assert _number(shared["Neuro-cores"]) < _number(small["Neuro-cores"])
    app.radio(key="cost_preset").set_value("Loihi 2 (Intel's statements)").run()
    # both presets share the first Loihi's barrier, which these small stages wait for; static power differs (1 W vs 0.1 W)
    assert _number(_metrics(app)["Generation, energy/token"]) > 5 * _number(shared["Generation, energy/token"])
    app.radio(key="cost_preset").set_value("custom").run()
    app.number_input(key=f"cost_{FITTED}_static_w_per_chip").set_value(0.0).run()
    assert not app.exception
    assert _metrics(app)["Static share of generation energy"] == "0.0%"
    costs = [d.value for d in app.dataframe if "quantity" in d.value.columns][-1]  # the first: the fitted preset's
    assert "set by you" in costs["source"].to_list()
    limits = next(d.value for d in app.dataframe if "limit" in d.value.columns)
    assert "set by you (what-if)" in limits["source"].to_list()


FITTED = "Loihi 2, fitted to the paper's 370M measurement"


def test_hardware_layout_and_lm_head_selectors(app, monkeypatch, tmp_path):
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    app.switch_page("pages/hardware.py").run()
    blocks = _number(_metrics(app)["Loihi 2 chips"])
    assert blocks == 2  # the tiny model's two blocks, one chip each
    app.radio(key="hw_layout").set_value("packed").run()
    assert _number(_metrics(app)["Loihi 2 chips"]) == 1
    app.radio(key="hw_lm_head").set_value("chip").run()
    assert not app.exception, app.exception
    cores = next(d.value for d in app.dataframe if "memory_bytes" in d.value.columns)
    assert "lm_head" in cores["group"].to_list()
    assert "LM head on chip" in _texts(app)


def test_hardware_page_beside_the_paper(app, monkeypatch, tmp_path):
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    app.switch_page("pages/hardware.py").run()
    assert not app.exception, app.exception
    frames = [d.value for d in app.dataframe]
    measured = next(f for f in frames if "Loihi 2, 24 chips" in f.columns)
    assert list(measured["Loihi 2, 24 chips"]) == [41.5, 405.0, 6632.0, 3.7, 0.099]
    assert all("as reported" in s for s in measured["source"])
    residuals = next(f for f in frames if "residual (%)" in f.columns)
    assert residuals["residual (%)"].abs().max() < 10
    constants = next(f for f in frames if "public figure to compare" in f.columns)
    assert constants["source"].str.startswith("fitted to the paper's 24-chip 370M measurement").sum() >= 10
    single = next(f for f in frames if "paper's single-chip estimate" in f.columns)
    assert list(single["paper's single-chip estimate"]) == [71.3, 59.0]
    ratios = next(f for f in frames if "paper's claim" in f.columns)
    assert list(ratios["paper's claim"]) == [3.0, 2.0, 6.6]
    assert ratios["our estimate vs this baseline"].notna().all()
    baseline = next(f for f in frames if "figure" in f.columns and "value" in f.columns and len(f) == 3)
    assert list(baseline["value"]) == [15.4, 719.0, 0.659]
    assert any(c.proto.spec and "context" in c.proto.spec.lower() for c in app.get("plotly_chart"))
    texts = _texts(app).lower()
    assert "only ratios" not in texts and "ratios, not absolute" not in texts


def test_hardware_bad_inputs_say_which_field_and_keep_the_page(app, monkeypatch, tmp_path):
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    app.switch_page("pages/hardware.py").run()
    charts = len(app.get("plotly_chart"))
    app.number_input(key="hw_core_sram_bytes").set_value(1).run()  # 1 KiB of SRAM cannot hold 128 KiB of synapse memory
    assert not app.exception, app.exception
    assert any("not a valid core" in e.value for e in app.error)
    # the rest of the page stays: the paper, the fit, the context chart, the ratios; no stale core map
    assert any("residual (%)" in d.value.columns for d in app.dataframe)
    assert any("paper's claim" in d.value.columns for d in app.dataframe)
    assert "Neuro-cores" not in _metrics(app)
    assert 1 <= len(app.get("plotly_chart")) < charts
    app.number_input(key="hw_core_sram_bytes").set_value(192).run()
    assert "Neuro-cores" in _metrics(app) and not app.error
    app.number_input(key="base_tokens_per_s").set_value(-3.0).run()
    assert any("baseline tokens/s" in e.value for e in app.error)
    assert "Neuro-cores" in _metrics(app)  # the estimate does not depend on the baseline
    app.number_input(key="base_tokens_per_s").set_value(15.4).run()
    app.number_input(key="ctx_watts").set_value(0.0).run()
    assert any("power (W) must be a positive number" in e.value for e in app.error)
    app.number_input(key="ctx_watts").set_value(15.0).run()
    app.radio(key="cost_preset").set_value("custom").run()
    app.number_input(key=f"cost_{FITTED}_synop_pj").set_value(-1.0).run()
    assert any("energy per synaptic operation" in e.value for e in app.error)
    assert "Neuro-cores" not in _metrics(app) and any("residual (%)" in d.value.columns for d in app.dataframe)
    app.number_input(key=f"cost_{FITTED}_synop_pj").set_value(5.0).run()
    app.number_input(key="ttft_prompt").set_value(0).run()
    assert any("prompt length must be 1" in e.value for e in app.error)
    app.number_input(key="ttft_prompt").set_value(100_000).run()
    assert not app.error
    first = _metrics(app)["First token, 100,000-token prompt"]
    assert "e+" not in first and first.endswith(" s")


def _measure_on_the_page(app, name: str) -> None:
    """Click Measure for a published size, wait for the queue's job (its own thread) and redraw."""
    from inspector.quant.config import QuantConfig
    from inspector.ui.hardware import measurement_job

    app.button(key=f"measure_{name}").click().run()
    assert not app.exception, app.exception
    job = measurement_job(name, QuantConfig())
    assert job is not None and job.wait(120) and job.state == "done", (job and job.state, job and job.error)
    app.run()
    assert not app.exception, app.exception


def test_hardware_page_measures_a_published_size(app, monkeypatch, tmp_path):
    from inspector.lm.config import PUBLISHED_CONFIGS

    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    # one layer: not the loaded checkpoint's shape (that one would be recognized as its published size)
    monkeypatch.setitem(
        PUBLISHED_CONFIGS, "tiny-published",
        {"hidden_size": 32, "num_hidden_layers": 1, "vocab_size": 300, "intermediate_size": 48},
    )
    app.switch_page("pages/hardware.py").run()
    labels = [b.label for b in app.button]
    assert "Measure MMfreeLM-370M" in labels and "Measure tiny-published" in labels
    _measure_on_the_page(app, "tiny-published")
    assert not app.error, [e.value for e in app.error]
    table = next(d.value for d in app.dataframe if "activity from" in d.value.columns)
    row = table[table["model"] == "tiny-published"]
    assert len(row) == 1 and "random weights" in row["activity from"].iloc[0]
    assert "Measure tiny-published" not in [b.label for b in app.button]
    assert any(tmp_path.rglob("tiny-published-*.npz"))


def test_hardware_what_ifs_say_how_much_each_change_moves(app, monkeypatch, tmp_path):
    from inspector.lm.config import PUBLISHED_CONFIGS

    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    # a tiny stand-in for the 370M configuration, so that its measurement takes a second
    monkeypatch.setitem(
        PUBLISHED_CONFIGS, "MMfreeLM-370M",
        {"hidden_size": 32, "num_hidden_layers": 3, "vocab_size": 300, "intermediate_size": 48},
    )
    app.switch_page("pages/hardware.py").run()
    assert any("Measure MMfreeLM-370M (above)" in i.value for i in app.info)
    _measure_on_the_page(app, "MMfreeLM-370M")
    table = next(d.value for d in app.dataframe if "what if" in d.value.columns)
    assert table["what if"].iloc[0].startswith("the paper's layout")
    assert table["change mJ/token (%)"].iloc[0] == 0
    halved = table[table["what if"] == "static power halved"]
    assert halved["change mJ/token (%)"].iloc[0] < -40  # static power dominates
    assert table["chips"].iloc[0] == 3 and table[table["what if"] == "fewer chips: packed layout"]["chips"].iloc[0] == 1
    assert any(m.startswith("activity:") for m in table["what if"])  # the loaded model's run beside it


def test_hardware_page_uses_the_loaded_checkpoint_for_its_published_size(app, monkeypatch):
    from inspector.lm.config import PUBLISHED_CONFIGS

    monkeypatch.setitem(
        PUBLISHED_CONFIGS, "tiny-published",
        {"hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 300, "intermediate_size": 48},
    )
    app.switch_page("pages/hardware.py").run()
    assert not app.exception, app.exception
    table = next(d.value for d in app.dataframe if "activity from" in d.value.columns)
    row = table[table["model"] == "tiny-published"]
    assert row["activity from"].iloc[0].startswith("the loaded checkpoint (real weights)")
    assert "Measure tiny-published" not in [b.label for b in app.button]


def _type_path(path: str) -> AppTest:
    at = _app()
    at.run()
    at.sidebar.selectbox(key="model_choice").select("Local checkpoint directory…").run()
    at.sidebar.text_input(key="checkpoint_dir").input(path).run()
    assert not at.exception, at.exception
    return at


def test_path_box_refuses_bad_paths_without_a_traceback(tiny_checkpoint):
    assert "no user 'nosuchuser'" in unescaped(_type_path("~nosuchuser/models").sidebar.error[0].value)
    assert "path too long" in unescaped(_type_path("/" + "x" * 4999).sidebar.error[0].value)
    assert "a file is at this path" in unescaped(_type_path(str(tiny_checkpoint / "config.json")).sidebar.error[0].value)


def test_huge_config_beside_tiny_weights_is_refused(tiny_checkpoint):
    import json

    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["hidden_size"] = 100000
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    message = unescaped(_type_path(str(tiny_checkpoint)).sidebar.error[0].value)
    assert "does not match the config" in message  # the first mismatching tensor, as the README says


def test_model_roots_limit_the_path_box(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_MODEL_ROOTS", str(tmp_path / "models"))
    assert "outside the allowed model directories" in unescaped(_type_path(str(tiny_checkpoint)).sidebar.error[0].value)


def test_sessions_with_the_same_settings_share_one_run_and_free_it_when_they_end(tiny_checkpoint, monkeypatch):
    from inspector.serve.run_cache import RUNS
    from inspector.ui import lifecycle

    for owner in list(RUNS.owners()):  # start from an empty cache (AppTest sessions all share one id)
        RUNS.release(owner)
    tab = {"id": "tab-1"}  # AppTest gives every session the same id: name them as browsers would
    monkeypatch.setattr(lifecycle, "session_id", lambda: tab["id"])
    monkeypatch.setattr("inspector.ui.runs.session_id", lambda: tab["id"])
    before = len(RUNS)
    first = _open_local(_app(), str(tiny_checkpoint))
    after_first = len(RUNS)
    tab["id"] = "tab-2"
    second = _open_local(_app(), str(tiny_checkpoint))  # the same settings, step by step
    assert not first.exception and not second.exception
    assert [c.value for c in first.code] == [c.value for c in second.code]
    assert len(RUNS) == after_first > before  # the second session computed nothing: it shares every run
    owners = {o for e in RUNS._entries.values() for o in e.owners}
    assert len(owners) == 2 and all(len(e.owners) == 2 for e in RUNS._entries.values())
    lifecycle.end_session("tab-1")
    assert len(RUNS) == after_first  # the other session still shows them
    lifecycle.end_session("tab-2")
    assert len(RUNS) == before == 0


def test_a_session_reaped_while_its_run_goes_on_is_freed_later(tiny_checkpoint, monkeypatch):
    """The reaper may end a closed tab's session while its analysis still runs; the result the run
    then puts in the shared cache must be freed by a later round, not kept for a session that is gone."""
    from inspector.serve.run_cache import RUNS
    from inspector.ui import lifecycle, runs

    for owner in list(RUNS.owners()):
        RUNS.release(owner)
    monkeypatch.setattr(lifecycle, "session_id", lambda: "closed-tab")
    monkeypatch.setattr("inspector.ui.runs.session_id", lambda: "closed-tab")
    real_analyze = runs.analyze

    def analyze_while_reaped(*args, **kwargs):
        lifecycle.end_session("closed-tab")  # the reaper's round, while the run goes on
        return real_analyze(*args, **kwargs)

    def tab_is_gone() -> None:  # a closed tab's script stops at its next st call: no rerun re-registers
        from streamlit.runtime.scriptrunner_utils.exceptions import StopException

        raise StopException()

    monkeypatch.setattr(runs, "analyze", analyze_while_reaped)
    monkeypatch.setattr(runs.st, "rerun", tab_is_gone)
    at = _open_local(_app(), str(tiny_checkpoint))
    assert not at.exception, at.exception
    assert len(RUNS) >= 1 and RUNS.owners() == {"closed-tab"}
    assert "runs" in lifecycle._callbacks.get("closed-tab", {})  # registered again after the run
    lifecycle.end_session("closed-tab")  # the next round
    assert len(RUNS) == 0


def test_learn_saturation_experiment_really_saturates(app):
    app.switch_page("pages/learn.py").run()
    app.radio(key="tour_step").set_value("5. Saturation").run()
    assert "underflows" in _texts(app)
    app.button(key="sat_experiment_button").click().run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    squeezed, narrow = table.iloc[1], table.iloc[2]
    assert squeezed["states_clipped"] > 0  # headroom 0.25 clips MLGRU states
    assert narrow["states_underflowed"] > 0.5  # minimum widths round most states to zero
    assert "With the squeezed state range" in _texts(app)


def test_saturation_page_counts_underflow(app):
    app.switch_page("pages/saturation.py").run()
    narrowest = [("q_state_bits", 6), ("q_internal_bits", 6), ("q_act_bits", 3), ("q_residual_bits", 3), ("q_spike_bits", 3)]
    for name, value in narrowest:
        app.slider(key=name).set_value(value).run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert int(metrics["Underflowed values"].replace(",", "")) > 0
    assert "underflow" in app.dataframe[0].value.columns and "effective_bits" in app.dataframe[0].value.columns


def test_spike_activity_shows_dense_and_event_driven_side_by_side(app):
    """Issue 19: dense and sigma-delta message counts side by side, and a raster of code changes."""
    app.switch_page("pages/spike_activity.py").run()
    labels = {m.label: m.value for m in app.metric}
    assert "Messages that carry a change" in labels and "Dense messages per token" in labels
    app.segmented_control(key="raster_what").set_value("code changes (delta, vth = 0)").run()
    assert not app.exception, app.exception
    assert any("Code changes of core" in str(c.proto.spec) for c in app.get("plotly_chart"))
    # switching the o_proj input to delta with a threshold re-runs with the mode in the counts
    app.selectbox(key="q_messaging_o").select("delta").run()
    app.number_input(key="q_vth_o").set_value(8).run()
    assert not app.exception, app.exception
    assert "delta vth" in _texts(app)


def test_the_sidebar_has_a_messaging_control_for_every_sending_group(app):
    """The controls derive from the schema's messaging groups: the projection outputs and the residual
    stream have a mode and a threshold like the BitLinear inputs, and a run follows them."""
    from inspector.quant.messaging import GROUPS

    app.switch_page("pages/spike_activity.py").run()
    assert {f"q_messaging_{g}" for g in GROUPS} <= {w.key for w in app.selectbox}
    assert {f"q_vth_{g}" for g in GROUPS} <= {w.key for w in app.number_input}
    app.selectbox(key="q_messaging_residual").select("delta").run()
    app.number_input(key="q_vth_residual").set_value(4).run()
    assert not app.exception, app.exception
    assert "residual delta vth=4" in _texts(app)
    # a threshold beyond the group's own width (residual_bits) is refused by name
    app.slider(key="q_residual_bits").set_value(4).run()
    assert not any("vth_residual" in unescaped(e.value) for e in app.error), [e.value for e in app.error]
    app.number_input(key="q_vth_residual").set_value(9).run()
    assert any("vth_residual=9" in unescaped(e.value) for e in app.error), [e.value for e in app.error]


def test_a_messaging_threshold_beyond_the_code_range_is_a_message(app):
    app.slider(key="q_spike_bits").set_value(4).run()
    app.selectbox(key="q_messaging_gate").select("threshold").run()
    app.number_input(key="q_vth_gate").set_value(100).run()
    assert not app.exception, app.exception
    assert any("vth_gate=100" in unescaped(e.value) for e in app.error), [e.value for e in app.error]
