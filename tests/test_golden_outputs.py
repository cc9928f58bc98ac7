"""The sample models' greedy outputs, float and integer, equal the pinned golden outputs (tests/golden.py)."""

from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN_FILE, PROMPTS, compute_golden


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_greedy_outputs_equal_the_golden_ones(name):
    expected = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))[name]
    got = compute_golden(name)
    assert got["integer_ids"] == expected["integer_ids"], got["integer_text"]
    assert got["integer_state_codes_sha256"] == expected["integer_state_codes_sha256"]
    assert got["float_ids"] == expected["float_ids"], got["float_text"]
    assert got["integer_text"] == expected["integer_text"]
