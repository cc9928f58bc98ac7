"""The Streamlit app, driven with AppTest: it renders, generates, and reports bad input as messages."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from inspector.catalog import sample_models
from tests.conftest import REPO

APP = str(REPO / "app.py")


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120)


def _open_local(at: AppTest, path: str) -> AppTest:
    at.run()
    at.sidebar.selectbox(key="model_choice").select("Local checkpoint directory…").run()
    at.sidebar.text_input(key="checkpoint_dir").input(path).run()
    return at


def test_generation_page_generates_from_a_checkpoint(tiny_checkpoint):
    at = _open_local(_app(), str(tiny_checkpoint))
    assert not at.exception
    assert not at.error
    at.sidebar.slider(key="max_new_tokens").set_value(12).run()
    at.button[0].click().run()
    assert not at.exception
    assert len(at.dataframe) == 1
    table = at.dataframe[0].value
    assert len(table) == 12
    assert at.code[0].value.startswith(at.sidebar.text_area[0].value)


def test_bad_checkpoint_path_shows_an_error(tmp_path):
    at = _open_local(_app(), str(tmp_path / "does-not-exist"))
    assert not at.exception
    assert "not a directory" in at.error[0].value


def test_corrupt_checkpoint_shows_an_error(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").write_bytes(b"garbage")
    at = _open_local(_app(), str(tiny_checkpoint))
    assert not at.exception
    assert "not a valid safetensors file" in at.error[0].value


def test_empty_prompt_shows_an_error(tiny_checkpoint):
    at = _open_local(_app(), str(tiny_checkpoint))
    at.sidebar.text_area[0].input("   ").run()
    at.button[0].click().run()
    assert not at.exception
    assert "empty" in at.error[0].value


@pytest.mark.skipif(not sample_models(), reason="no sample model trained yet")
def test_default_sample_model_generates():
    at = _app()
    at.run()
    assert not at.exception
    at.sidebar.slider(key="max_new_tokens").set_value(8).run()
    at.button[0].click().run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 8
