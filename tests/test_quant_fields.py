"""QuantConfig's fields say what they are where they are declared (`FieldInfo`): the validation, the
sidebar, the links and the sweeps all read that one declaration. Keys QuantConfig no longer has load
with a note, never a refusal and never silently."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from dataclasses import dataclass

import pytest

from inspector.quant import messaging
from inspector.quant.config import (
    RETIRED_FIELDS,
    FieldInfo,
    QuantConfig,
    QuantConfigError,
    Sweep,
    field_infos,
    setting,
)
from inspector.quant.files import load_quant_config, quant_spec, save_quant_config
from inspector.sweep.knobs import knob_fields, knobs
from inspector.ui.url_settings import QUANT_FIELDS, QUANT_SLIDERS, fields, parse_query, quant_key


def test_every_field_declares_its_metadata():
    infos = field_infos()
    assert list(infos) == [f.name for f in dataclasses.fields(QuantConfig)]
    for name, info in infos.items():
        assert isinstance(info, FieldInfo) and info.label, name
        lo, hi = info.bounds(QuantConfig())
        if lo is not None or hi is not None:
            assert info.why, f"{name}: a range needs its reason (said when a value is outside it)"
        if info.choices:
            assert getattr(QuantConfig(), name) in info.choices, name


def test_a_field_without_metadata_is_an_error_not_an_unvalidated_field():
    @dataclass(frozen=True)
    class Bare(QuantConfig):
        extra_bits: int = 3

    with pytest.raises(TypeError, match="without a FieldInfo.*extra_bits"):
        Bare()


def test_url_keys_and_widget_keys_are_unique_and_match_the_link_spec():
    urls = [info.url for info in field_infos().values() if info.url]
    assert len(urls) == len(set(urls))
    spec = fields(("shakespeare",), ("emulator",))
    params = [f.param for f in spec]
    assert len(params) == len(set(params)) and len({f.key for f in spec}) == len(spec)
    assert set(urls) <= set(params)
    assert {f.key for f in spec if f.param in urls} == {quant_key(name) for name in QUANT_FIELDS}
    assert set(QUANT_SLIDERS) == {n for n, i in field_infos().items() if i.control == "slider"}


def test_sweep_knobs_are_exactly_the_fields_marked_as_knobs():
    marked = {name for name, info in field_infos().items() if info.sweep is not None}
    assert set(knob_fields()) == marked
    found, skipped = knobs()
    assert {k.name for k in found} | set(skipped) == set(field_infos())
    assert {k.name for k in found} <= marked
    # not swept: hardware widths and calibration length; the thresholds of dense groups change nothing
    assert set(skipped) - marked == {n for n, i in field_infos().items() if i.sweep is None}
    assert set(skipped) & marked == set(messaging.VTH_FIELDS) | {"messaging_cum_error"}
    for knob in found:
        sweep = field_infos()[knob.name].sweep
        assert (knob.lower, knob.precise, knob.minimum, knob.per_layer) == (
            sweep.lower, sweep.precise, sweep.minimum, sweep.per_layer,
        )


def test_a_field_declared_later_is_swept_as_it_declares():
    @dataclass(frozen=True)
    class Extended(QuantConfig):
        extra_bits: int = setting(10, FieldInfo("Extra bits", low=2, high=24, why="a test", sweep=Sweep(8, 14, minimum=4)))
        rounding: str = setting("half_up", FieldInfo("Rounding", choices=("half_up", "even")))

    found, skipped = knobs(Extended())
    by_name = {k.name: k for k in found}
    assert (by_name["extra_bits"].lower, by_name["extra_bits"].precise, by_name["extra_bits"].minimum) == (8, 14, 4)
    assert "rounding" in skipped
    with pytest.raises(QuantConfigError, match="extra_bits=30 is outside 2..24: a test"):
        Extended(extra_bits=30)
    with pytest.raises(QuantConfigError, match="rounding='odd': choose one of half_up, even"):
        Extended(rounding="odd")


def test_messaging_fields_follow_the_groups():
    names = {f.name for f in dataclasses.fields(QuantConfig)}
    assert set(messaging.MESSAGING_FIELDS) <= names
    assert {n for n in names if n.startswith(("messaging_", "vth_"))} == set(messaging.MESSAGING_FIELDS)
    for key, group in messaging.GROUPS.items():
        assert field_infos()[f"messaging_{key}"].label == group.label
        assert field_infos()[f"messaging_{key}"].choices == messaging.MODES
        assert group.label in field_infos()[f"vth_{key}"].label


@pytest.mark.parametrize(
    "overrides,words",
    [
        ({"vth_o": -1}, "QuantConfig.vth_o=-1 is outside 0..128: a threshold is a magnitude"),
        ({"messaging_gate": "often"}, "QuantConfig.messaging_gate='often': choose one of dense, delta, threshold"),
        ({"spike_bits": 4, "vth_down": 9}, "QuantConfig.vth_down=9 is outside 0..8"),
        ({"act_bits": 25}, "QuantConfig.act_bits=25 is outside 2..24: activations travel as graded spikes"),
        ({"message_bits": 16, "act_bits": 17}, "QuantConfig.act_bits=17 is outside 2..16"),
        ({"message_bits": 40}, "QuantConfig.message_bits=40 is outside 2..32"),
        ({"calibration_tokens": 8}, "QuantConfig.calibration_tokens=8 is below 16"),
        ({"scale_rule": "nearest"}, "QuantConfig.scale_rule='nearest': choose one of max_code, study"),
        ({"state_headroom": 0.01}, "QuantConfig.state_headroom=0.01 is outside 0.0625..64.0"),
    ],
)
def test_bad_settings_are_refused_by_name_and_reason(overrides, words):
    with pytest.raises(QuantConfigError) as caught:
        QuantConfig().with_overrides(overrides)
    assert words in str(caught.value)
    with pytest.raises(QuantConfigError):  # the same words from a text spec (CLI --quant, the A/B box)
        quant_spec(",".join(f"{k}={v}" for k, v in overrides.items()))


def test_links_refuse_out_of_range_widths_by_name():
    spec = fields(("shakespeare",), ("emulator",))
    values, problems = parse_query({"act_bits": "30", "headroom": "3", "scale_rule": "x", "cum_error": "2"}, spec)
    assert values == {}
    for param in ("act_bits", "headroom", "scale_rule", "cum_error"):
        assert any(p.startswith(f"{param} from the link") for p in problems), param


@pytest.mark.parametrize("key", sorted(RETIRED_FIELDS))
def test_a_saved_file_with_a_retired_key_loads_with_a_note(tmp_path, key):
    path = save_quant_config(QuantConfig(state_bits=16), tmp_path / "qc.json")
    data = json.loads(path.read_text())
    data["quant_config"][key] = 24 if key == "register_bits" else True
    path.write_text(json.dumps(data))
    notes: list[str] = []
    assert load_quant_config(path, note=notes.append) == QuantConfig(state_bits=16)
    assert len(notes) == 1 and key in notes[0] and "ignored" in notes[0] and "qc.json" in notes[0]
    with pytest.warns(UserWarning, match=f"{key} is no longer a QuantConfig setting"):  # never silently
        load_quant_config(path)
    notes.clear()
    assert quant_spec(f"state_bits=16,{key}=1", note=notes.append) == QuantConfig(state_bits=16)
    assert len(notes) == 1 and key in notes[0]


def test_an_unknown_key_is_still_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(QuantConfigError, match="unknown QuantConfig key"):
            QuantConfig().with_overrides({"register_bitz": 24})


def test_a_link_with_a_retired_key_says_it_was_ignored():
    spec = fields(("shakespeare",), ("emulator",))
    values, problems = parse_query({"register_bits": "24", "state_bits": "16"}, spec)
    assert values == {"q_state_bits": 16}
    assert len(problems) == 1 and problems[0].startswith("register_bits from the link was ignored")


def test_the_cli_notes_a_retired_key(tmp_path):
    path = save_quant_config(QuantConfig(), tmp_path / "qc.json")
    data = json.loads(path.read_text())
    data["quant_config"]["lm_head_on_host"] = True
    path.write_text(json.dumps(data))
    code = (
        "import sys; from inspector.cli import parse_overrides; "
        f"qc = parse_overrides(['state_bits=12'], {str(path)!r}); print(qc.state_bits)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "12"
    assert "note:" in done.stderr and "lm_head_on_host is no longer a QuantConfig setting" in done.stderr


def test_text_settings_are_read_as_their_fields_types():
    """`key=value` text (CLI --quant and --lower, the A/B box) becomes a value of the field's declared type."""
    from inspector.quant.files import parse_setting

    assert parse_setting("act_bits", "6") == 6 and isinstance(parse_setting("act_bits", "6"), int)
    assert parse_setting("state_headroom", "2") == 2.0 and isinstance(parse_setting("state_headroom", "2"), float)
    assert parse_setting("scale_rule", " study ") == "study" and parse_setting("messaging_o", "1") == "1"
    assert parse_setting("pow2_scales", "TRUE") is True
    assert quant_spec("state_headroom=4,pow2_scales=true") == QuantConfig(state_headroom=4.0, pow2_scales=True)
    with pytest.raises(QuantConfigError, match="QuantConfig.act_bits must be an integer, got 6.5"):
        quant_spec("act_bits=6.5")
    with pytest.raises(QuantConfigError, match="QuantConfig.pow2_scales must be true or false, got 1"):
        quant_spec("pow2_scales=1")
    with pytest.raises(QuantConfigError, match="QuantConfig.messaging_o='1': choose one of"):
        quant_spec("messaging_o=1")
