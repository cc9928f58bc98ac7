"""Shared fixtures: a tiny checkpoint written to disk in exactly the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspector.lm.checkpoint import save_checkpoint
from inspector.lm.config import HGRNBitConfig
from inspector.lm.generate import encode_prompt, generate
from inspector.lm.model import HGRNBitForCausalLM
from inspector.lm.tokenizer import decode_continuation, train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]

# The Learn tour's steps that ask for a prediction, and the key of each step's prediction widget
# (pages/learn.py); the AppTest and the browser test walk the same list.
TOUR_PREDICTIONS = [
    ("2. Spikes", "predict_spike_bits"),
    ("3. MLGRU", "predict_memory"),
    ("4. Messaging", "predict_sigma_delta"),
    ("5. Saturation", "predict_state_bits"),
    ("6. Drift", "predict_local"),
    ("7. Cores", "predict_chips"),
    ("8. Energy", "predict_energy"),
]

# `make test-fast` (pytest -m "not slow") leaves these out: modules that drive whole pages, Lava graphs,
# Ray sweeps, browsers or the published sizes, and single tests that take several seconds each. The
# golden outputs, the integer kernels and models against their plain references, the messaging and
# chip-fit references stay in: a fast run still checks every bit-exact path. `make test` runs all.
SLOW_MODULES = frozenset({
    "test_app", "test_browser", "test_browser_sessions", "test_hostile_input", "test_jobs_app", "test_lava_backend",
    "test_lava_graph", "test_lava_sdn", "test_ray_cluster", "test_readme_quality", "test_reproducible_integers",
    "test_sample_models", "test_sensitivity_page", "test_sweep",
})
SLOW_TESTS = frozenset({
    "test_sample_model_core_map_matches_the_readme", "test_training_step_reduces_loss", "test_real_weights_drive_synapse_counts",
    "test_generation_and_traces_on_the_released_layout", "test_backends_module_imports_no_backend",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or getattr(item, "originalname", item.name) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)

def generate_text(model, tokenizer, prompt: str, **settings) -> str:
    """The whole continuation as one string, decoded after the prompt."""
    ids = [step.token_id for step in generate(model, tokenizer, prompt, **settings)]
    return decode_continuation(tokenizer, encode_prompt(tokenizer, prompt), ids)


TINY_TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Once upon a time there was a little girl named Lily. She liked to play outside.\n"
) * 4


def tiny_config(**overrides) -> HGRNBitConfig:
    base = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, hidden_ratio=4, intermediate_size=48)
    base.update(overrides)
    return HGRNBitConfig(**base)


def randomize(model: HGRNBitForCausalLM, seed: int = 0) -> HGRNBitForCausalLM:
    """Random weights everywhere, norms and lower bounds included, so no parameter is a silent no-op."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.3 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * (1.0 if "lower_bounds" in name else 0.2))
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_bpe_tokenizer(TINY_TEXT, vocab_size=300)


@pytest.fixture()
def tiny_checkpoint(tmp_path, tiny_tokenizer) -> Path:
    torch.manual_seed(0)
    model = randomize(HGRNBitForCausalLM(tiny_config(vocab_size=tiny_tokenizer.get_vocab_size())))
    return save_checkpoint(model, tiny_tokenizer, tmp_path / "tiny")


@pytest.fixture(autouse=True)
def isolated_activity_cache(tmp_path_factory, monkeypatch):
    """Tests never read or fill the user's cache of published-size measurements."""
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path_factory.mktemp("activity_cache")))
