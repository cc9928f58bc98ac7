"""The sample models' greedy outputs, float and integer, equal the pinned golden outputs (tests/golden.py)."""

from __future__ import annotations

import json

import pytest

from inspector.quant.config import QuantConfig
from inspector.quant.messaging import GROUPS
from tests.golden import GOLDEN_FILE, PROMPTS, compute_golden


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_greedy_outputs_equal_the_golden_ones(name):
    expected = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))[name]
    got = compute_golden(name)
    assert got["integer_ids"] == expected["integer_ids"], got["integer_text"]
    assert got["integer_state_codes_sha256"] == expected["integer_state_codes_sha256"]
    assert got["float_ids"] == expected["float_ids"], got["float_text"]
    assert got["integer_text"] == expected["integer_text"]


@pytest.mark.parametrize("mode", ["delta", "threshold"])
def test_event_driven_messaging_at_zero_threshold_gives_the_golden_bits(mode):
    """Sigma-delta (and threshold) at vth = 0 in every group: receivers get exactly the codes, so the
    greedy tokens and every MLGRU state code are the pinned dense ones."""
    name = "shakespeare"
    expected = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))[name]
    qc = QuantConfig().with_overrides({f"messaging_{g}": mode for g in GROUPS})
    got = compute_golden(name, qc)
    assert got["integer_ids"] == expected["integer_ids"], got["integer_text"]
    assert got["integer_state_codes_sha256"] == expected["integer_state_codes_sha256"]
