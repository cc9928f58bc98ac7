"""A visitor of a shared server, driven with AppTest (issue 22, items 1, 2 and 7): every path box refuses
what lies outside the roots, devices and overlong names with a message and no traceback, writes
nothing, and tells nothing about files outside the roots; prompts are shown as text in both panes."""

from __future__ import annotations

import html
import json
import os

import pytest

from inspector.ui.text import unescaped
from tests.test_app import _app, _open_local

PROMPT = "## X [y](http://z)\n\n## Session expired: [log in again](http://evil.example)"
LONG = "/" + "x" * 4999


@pytest.fixture()
def shared(tiny_checkpoint, tmp_path, monkeypatch):
    """A server with roots: the tiny checkpoint is the model root, data/ the data root, outside/ is neither."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps({"api_token": "hunter2"}))
    (outside / "results").mkdir()
    (outside / "results" / "best_quant_config.json").write_text("{}")
    monkeypatch.setenv("INSPECTOR_MODEL_ROOTS", str(tiny_checkpoint))
    monkeypatch.setenv("INSPECTOR_DATA_ROOT", str(data))
    at = _open_local(_app(), str(tiny_checkpoint), tokens=3)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at, outside, data


def _snapshot(root) -> list:
    return sorted((str(p), p.stat().st_size) for p in root.rglob("*"))


def _errors(at) -> str:
    return "\n".join(unescaped(e.value) for e in at.error)


def _no_leak(text: str) -> None:
    assert "api_token" not in text and "hunter2" not in text and "Traceback" not in text


def test_quant_config_file_box_refuses_outside_long_and_devices(shared):
    at, outside, data = shared
    before = _snapshot(outside)
    for typed, said in ((str(outside / "secret.json"), "outside the directories this shared server allows"),
                        (str(outside / "missing.json"), "outside the directories this shared server allows"),
                        (LONG, "path too long"), ("/dev/zero", "outside")):
        at.sidebar.text_input(key="q_file").input(typed).run()
        assert not at.exception, at.exception
        sidebar = "\n".join(unescaped(e.value) for e in at.sidebar.error)
        assert said in sidebar, (typed, sidebar)
        _no_leak(_errors(at))
        assert "nothing was run" in _errors(at).lower()
        assert len(at.get("plotly_chart")) == 0  # no figure of the older settings is shown as current
    at.sidebar.text_input(key="q_file").input("").run()
    assert not at.exception and not at.error
    assert _snapshot(outside) == before


def test_checkpoint_box_refuses_outside_and_long(shared):
    at, outside, _ = shared
    for typed, said in ((str(outside), "outside the allowed model directories"), (LONG, "path too long"),
                        ("/dev/zero", "outside"), ("~nobody/x", "'~' is not expanded")):
        at.sidebar.text_input(key="checkpoint_dir").input(typed).run()
        assert not at.exception, at.exception
        assert said in unescaped(at.sidebar.error[0].value), typed


def test_config_b_box_refuses_outside_long_and_devices(shared):
    at, outside, _ = shared
    at.switch_page("pages/quantization_error.py").run()
    assert not at.exception, at.exception
    for typed, said in ((str(outside / "secret.json"), "outside"), (LONG, "path too long"), ("/dev/zero", "outside"),
                        ("state_bits=1", "state_bits=1 is outside 2..24")):
        at.text_input(key="ab_spec").input(typed).run()
        at.button(key="ab_button").click().run()
        assert not at.exception, at.exception
        assert said in _errors(at), (typed, _errors(at))
        _no_leak(_errors(at))


def test_sweep_boxes_refuse_outside_long_and_existing_results(shared):
    at, outside, data = shared
    before = _snapshot(outside)
    at.switch_page("pages/sensitivity.py").run()
    assert not at.exception, at.exception
    at.text_area(key="sweep_text").input("To be, or not to be, that is the question. " * 8).run()
    for typed, said in ((str(outside / "new"), "outside"), ("/etc/qa-test", "outside"), (LONG, "path too long"),
                        ("relative/dir", "outside"), ("", "type the path")):
        at.text_input(key="sweep_out").input(typed).run()
        assert not at.exception, at.exception
        assert said in _errors(at), (typed, _errors(at))
        assert at.button(key="sweep_start").disabled  # and the page checks again if it is clicked anyway
    assert not os.path.exists("/etc/qa-test") and not (outside / "new").exists() and not os.path.exists("relative")
    existing = data / "done"
    existing.mkdir()
    (existing / "best_quant_config.json").write_text('{"quant_config": {}}')
    at.text_input(key="sweep_out").input(str(existing)).run()
    assert "already holds files" in _errors(at) and "Replace existing results" in _errors(at)
    assert at.button(key="sweep_start").disabled
    assert (existing / "best_quant_config.json").read_text() == '{"quant_config": {}}'  # not replaced
    at.checkbox(key="sweep_replace").check().run()
    assert "already holds files" not in _errors(at) and not at.button(key="sweep_start").disabled
    at.radio(key="sweep_source").set_value("Open existing results").run()
    for typed, said in ((str(outside / "results"), "outside"), (LONG, "path too long"), ("/dev/zero", "outside")):
        at.text_input(key="sweep_open_dir").input(typed).run()
        assert not at.exception, at.exception
        assert said in _errors(at), (typed, _errors(at))
    assert _snapshot(outside) == before


def test_a_local_app_refuses_devices_and_long_names_too(app_local):
    at = app_local
    at.sidebar.text_input(key="q_file").input("/dev/zero").run()
    assert not at.exception and "not a regular file" in "\n".join(unescaped(e.value) for e in at.sidebar.error)
    at.sidebar.text_input(key="q_file").input(LONG).run()
    assert not at.exception and "path too long" in "\n".join(unescaped(e.value) for e in at.sidebar.error)


@pytest.fixture()
def app_local(tiny_checkpoint, monkeypatch):
    monkeypatch.delenv("INSPECTOR_MODEL_ROOTS", raising=False)
    at = _open_local(_app(), str(tiny_checkpoint), tokens=3)
    assert not at.exception, at.exception
    return at


def test_prompt_from_a_link_is_text_in_both_panes(tiny_checkpoint, monkeypatch):
    """`?prompt=## Session expired: [log in again](http://...)` shows those characters, no heading, no link."""
    monkeypatch.delenv("INSPECTOR_MODEL_ROOTS", raising=False)
    at = _app()
    at.query_params.update({"model": "local", "path": str(tiny_checkpoint), "tokens": "3", "prompt": PROMPT})
    at.run()
    assert not at.exception, at.exception
    assert any(c.value.startswith(PROMPT) for c in at.code)  # float pane: a code block
    integer_pane = [h.proto.body for h in at.get("html")]
    assert any(html.escape(PROMPT) in body for body in integer_pane)  # integer pane: escaped HTML, never Markdown
    assert all("<a " not in body and "<h2" not in body for body in integer_pane)
    markdown = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    assert not any("http://z" in text or "## X" in text for text in markdown)


def test_seed_typed_in_e_notation_and_a_repeated_link_parameter_are_refused(tiny_checkpoint, monkeypatch):
    monkeypatch.delenv("INSPECTOR_MODEL_ROOTS", raising=False)
    at = _app()
    at.query_params.update({"model": "local", "path": str(tiny_checkpoint), "tokens": "3", "seed": ["1", "99"]})
    at.run()
    assert not at.exception, at.exception
    warnings = " ".join(unescaped(w.value) for w in at.sidebar.warning)
    assert "seed appears more than once in the link" in warnings
    assert at.sidebar.text_input(key="seed").value == "0"  # neither 1 nor 99: the default, and said
    at.sidebar.text_input(key="seed").input("1e30").run()
    assert not at.exception
    assert "Seed: '1e30' is not a whole number" in "\n".join(unescaped(e.value) for e in at.sidebar.error)
    assert len(at.get("plotly_chart")) == 0


def test_sensitivity_number_box_says_why_next_to_it(app_local):
    at = app_local
    at.switch_page("pages/sensitivity.py").run()
    at.number_input(key="sweep_tokens").set_value(0).run()
    assert not at.exception, at.exception
    assert any("Held-out tokens per point: must be between 16 and 8,192" in unescaped(e.value) for e in at.error)
    assert at.button(key="sweep_start").disabled
    at.number_input(key="sweep_tokens").set_value(32).run()
    assert not any("Held-out tokens" in unescaped(e.value) for e in at.error)


def test_ab_result_of_an_older_config_b_is_not_shown_as_current(app_local):
    at = app_local
    at.switch_page("pages/quantization_error.py").run()
    at.text_input(key="ab_spec").input("state_bits=12").run()
    at.button(key="ab_button").click().run()
    assert any("state\\_bits\\=12" in m.value for m in at.markdown)
    at.text_input(key="ab_spec").input("state_bits=16").run()
    assert not at.exception
    assert not any("A vs B" in m.value for m in at.markdown)
    assert any("Config B changed" in i.value for i in at.info)
