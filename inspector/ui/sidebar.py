"""The sidebar shown on every page: which model, which prompt, how to sample.

It returns a `Session` (or None when no model could be loaded, after showing why). Loaded models
are cached with `st.cache_resource`, keyed by the directory and its files' sizes and mtimes, so
switching pages never reloads a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from inspector.catalog import checkpoint_fingerprint, sample_models
from inspector.checkpoint import LoadedModel, load_checkpoint
from inspector.errors import InspectorError
from inspector.generate import MAX_NEW_TOKENS, SamplingSettings

LOCAL_CHOICE = "Local checkpoint directory…"
DEFAULT_PROMPTS = {"shakespeare": "ROMEO:\n", "tinystories": "Once upon a time, "}


@dataclass
class Session:
    loaded: LoadedModel
    prompt: str
    sampling: SamplingSettings


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def cached_checkpoint(directory: str, _fingerprint: tuple) -> LoadedModel:
    return load_checkpoint(directory)


def _load(directory: Path) -> LoadedModel:
    fingerprint = checkpoint_fingerprint(directory)
    return cached_checkpoint(str(directory), fingerprint)


def render_sidebar() -> Session | None:
    samples = sample_models()
    with st.sidebar:
        st.header("Model")
        choice = st.selectbox("Model", [*samples, LOCAL_CHOICE], key="model_choice")
        if choice == LOCAL_CHOICE:
            typed = st.text_input(
                "Checkpoint directory",
                key="checkpoint_dir",
                placeholder="/path/to/MMfreeLM-370M",
                help="A local directory with config.json, model.safetensors (or shards) and tokenizer.json.",
            )
            if not typed.strip():
                st.info("Type the path of a local checkpoint directory.")
                return None
            directory = Path(typed.strip()).expanduser()
        else:
            directory = samples[choice]
        try:
            loaded = _load(directory)
        except InspectorError as exc:
            st.error(f"Cannot load this checkpoint. {exc}")
            return None
        st.caption(_model_caption(loaded))

        st.header("Prompt")
        prompt = st.text_area(
            "Prompt", value=DEFAULT_PROMPTS.get(loaded.name, "The "), key=f"prompt_{loaded.name}", height=90
        )
        st.header("Sampling")
        tokens = st.slider("Tokens to generate", 1, min(256, MAX_NEW_TOKENS), 48, key="max_new_tokens")
        temperature = st.slider("Temperature (0 = greedy)", 0.0, 2.0, 0.8, 0.05, key="temperature")
        top_k = st.number_input("Top-k (0 = off)", 0, loaded.config.vocab_size, 40, key="top_k")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
    return Session(loaded, prompt, SamplingSettings(int(tokens), float(temperature), int(top_k), int(seed)))


def _model_caption(loaded: LoadedModel) -> str:
    cfg = loaded.config
    params = loaded.model.num_parameters()
    text = f"{params / 1e6:.2f} M parameters · {cfg.num_hidden_layers} layers · hidden {cfg.hidden_size} · vocab {cfg.vocab_size}"
    if loaded.card and "val_bits_per_char" in loaded.card:
        text += f" · val {loaded.card['val_bits_per_char']} bits/char on {loaded.card.get('corpus', '?')}"
    return text
