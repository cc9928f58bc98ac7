"""Settings are refused by name and with the reason: every QuantConfig field against its declared
type, and the model config's `expand_ratio` like its other keys."""

from __future__ import annotations

import dataclasses

import pytest

from inspector.errors import CheckpointError
from inspector.lm.config import HGRNBitConfig
from inspector.quant.config import QuantConfig, QuantConfigError, field_types

# A value of the wrong type for each declared type, and the words the error uses for the right one.
WRONG = {int: ("8", "an integer"), float: ("2.0", "a number"), bool: (1, "true or false"), str: (3, "text")}


def test_every_quant_config_field_has_a_checked_type():
    fields = {f.name for f in dataclasses.fields(QuantConfig)}
    assert set(field_types()) == fields
    assert set(field_types().values()) <= set(WRONG)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(QuantConfig)])
def test_a_quant_config_field_of_the_wrong_type_is_refused_by_name(name):
    value, what = WRONG[field_types()[name]]
    with pytest.raises(QuantConfigError, match=f"QuantConfig.{name} must be {what}, got {value!r}"):
        QuantConfig().with_overrides({name: value})


@pytest.mark.parametrize("name", [n for n, kind in field_types().items() if kind in (int, float)])
def test_true_is_not_a_number_of_bits(name):
    with pytest.raises(QuantConfigError, match=f"QuantConfig.{name} must be"):
        QuantConfig().with_overrides({name: True})


def test_an_integer_is_a_valid_float_setting():
    assert QuantConfig().with_overrides({"state_headroom": 1}).state_headroom == 1


def _config(**changes) -> dict:
    return {"model_type": "hgrn_bit", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, **changes}


@pytest.mark.parametrize("ratio", [0, -1, 1.5, "2", True, None])
def test_expand_ratio_must_be_a_positive_integer(ratio):
    with pytest.raises(CheckpointError, match=r"\[expand_ratio\].*positive integer") as info:
        HGRNBitConfig.from_dict(_config(expand_ratio=ratio))
    assert repr(ratio) in str(info.value)


def test_a_valid_expand_ratio_widens_the_mlgru():
    config = HGRNBitConfig.from_dict(_config(expand_ratio=2, use_lower_bound=False))
    assert config.mixer_size == 128
