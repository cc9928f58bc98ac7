"""Settings that lose the model together (inspector.quant.precision): said in the CLI and the sidebar,
and the advice they give checked on a sample model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from inspector.backends.emulator import Emulator
from inspector.cli import main as cli_main
from inspector.lm.catalog import sample_models, validation_text
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.tokenizer import encode_document
from inspector.lm.train import bits_per_character
from inspector.quant.config import QUANT_PRESETS, QuantConfig
from inspector.quant.precision import accumulator_headroom, max_fan_in, precision_notes
from inspector.ui.text import unescaped

SHAKESPEARE_FAN_IN = 768  # the GLU's down_proj: 256 * 4 * 2 / 3, rounded up to a multiple of 256


def _notes(fan_in: int | None = SHAKESPEARE_FAN_IN, **overrides) -> list[str]:
    return precision_notes(QuantConfig().with_overrides(overrides), fan_in)


@pytest.mark.parametrize("preset", list(QUANT_PRESETS))
def test_the_presets_have_nothing_to_say(preset):
    for fan_in in (SHAKESPEARE_FAN_IN, 2816, 8192):  # the sample models, 370M's down_proj, 2.7B's
        assert precision_notes(QuantConfig.preset(preset), fan_in) == []


def test_a_norm_input_three_bits_wider_than_the_inverse_sqrt_is_said_with_the_fix():
    assert _notes(residual_bits=18) == []  # two bits wider: measured harmless
    (note,) = _notes(residual_bits=19)
    assert note.startswith("residual_bits=19 with norm_frac_bits=16")
    assert note.endswith("raise norm_frac_bits to 17 or more, or narrow residual_bits to 18 or less")
    assert _notes(residual_bits=19, norm_frac_bits=17) == []
    (note,) = _notes(norm_frac_bits=9)  # the 12-bit internal codes (g_norm, the o and down input norms)
    assert note.startswith("internal_bits=12 with norm_frac_bits=9")
    # no norm_frac_bits is enough for 32-bit codes: narrow them
    notes = _notes(message_bits=32, act_bits=32, norm_frac_bits=24)
    assert len(notes) == 1 and notes[0].endswith("narrow act_bits to 26 or less and raise norm_frac_bits to 24")


def test_spikes_too_wide_for_their_accumulator_are_said_with_the_fix():
    assert accumulator_headroom(SHAKESPEARE_FAN_IN) == 5 and accumulator_headroom(2816) == 6
    assert _notes(spike_bits=19) == []
    (note,) = _notes(spike_bits=20)
    assert "sums up to 768 graded spikes" in note
    assert note.endswith("widen accumulator_bits to 25 or more, or narrow spike_bits to 19 or less")
    assert _notes(fan_in=None, spike_bits=20) == []  # no model: the accumulator is not checked
    (note,) = _notes(accumulator_bits=6)  # narrower than the 8-bit spikes; no spike width would fit
    assert "the accumulator is 2 bits narrower than the spikes" in note and note.endswith("widen accumulator_bits to 13 or more")
    (note,) = _notes(message_bits=32, spike_bits=30, accumulator_bits=32)
    assert note.endswith("narrow spike_bits to 27 or less and widen accumulator_bits to 32")


def test_the_fan_in_is_the_widest_projection_input():
    loaded = load_checkpoint(sample_models()["shakespeare"])
    assert max_fan_in(loaded.config) == SHAKESPEARE_FAN_IN


def test_the_cli_says_it_and_still_runs(tiny_checkpoint, tmp_path, capsys):
    argv = ["run", "--model", str(tiny_checkpoint), "--prompt", "To be", "--tokens", "2", "--out", str(tmp_path / "run")]
    assert cli_main([*argv, "--quant", "residual_bits=20", "calibration_tokens=64"]) == 0
    err = capsys.readouterr().err
    assert "note: residual_bits=20 with norm_frac_bits=16" in err and "raise norm_frac_bits to 18" in err
    assert cli_main([*argv, "--quant", "residual_bits=20", "norm_frac_bits=18", "calibration_tokens=64"]) == 0
    assert "norm_frac_bits" not in capsys.readouterr().err


def test_the_page_says_it_and_still_runs(tiny_checkpoint):
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.query_params.update({"model": "local", "path": str(tiny_checkpoint), "tokens": "2", "residual_bits": "20"})
    at.run()
    assert not at.exception, at.exception
    warnings = " ".join(unescaped(w.value) for w in at.main.warning)
    assert "residual_bits=20 with norm_frac_bits=16" in warnings and "raise norm_frac_bits to 18" in warnings
    assert not at.error and len(at.dataframe[0].value) == 2  # the run happened
    at.slider(key="q_norm_frac_bits").set_value(18).run()  # the fix the note names, in the sidebar
    assert not at.exception and not at.main.warning


@pytest.mark.slow
def test_the_advice_is_what_the_sample_model_measures():
    """Every width at 24 bits loses the shakespeare model; the notes' two fixes bring it back."""
    loaded = load_checkpoint(sample_models()["shakespeare"])
    text = validation_text(loaded)[:6000]
    ids = torch.tensor(encode_document(loaded.tokenizer, text))

    def bpc(**overrides) -> float:
        return bits_per_character(Emulator(loaded, QuantConfig().with_overrides(overrides)).step_fn(None), ids, len(text))

    wide = {"act_bits": 24, "residual_bits": 24, "spike_bits": 24}
    notes = precision_notes(QuantConfig().with_overrides(wide), SHAKESPEARE_FAN_IN)
    assert [n.split(" ", 1)[0] for n in notes] == ["residual_bits=24", "act_bits=24", "spike_bits=24"]
    assert "raise norm_frac_bits to 22 or more" in notes[0] and "widen accumulator_bits to 29 or more" in notes[2]
    fixed = wide | {"norm_frac_bits": 22, "accumulator_bits": 29}
    assert precision_notes(QuantConfig().with_overrides(fixed), SHAKESPEARE_FAN_IN) == []
    default = bpc()
    assert bpc(**wide) > 1.5 * default
    assert bpc(**fixed) < 1.01 * default
