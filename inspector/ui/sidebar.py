"""The sidebar shown on every page: model, backend, prompt, sampling and QuantConfig overrides.

It returns a `Session` (or None when no model could be loaded, after showing why). Models and their
emulators are cached with `st.cache_resource`, keyed by the directory, its files' sizes and mtimes
and the QuantConfig, so switching pages never reloads or re-converts anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from inspector.backends import BackendStatus, backend_statuses
from inspector.catalog import checkpoint_fingerprint, sample_models
from inspector.checkpoint import LoadedModel, load_checkpoint
from inspector.emulator.engine import Emulator, make_backend
from inspector.errors import InspectorError
from inspector.generate import MAX_NEW_TOKENS, SamplingSettings
from inspector.quant.config import QuantConfig
from inspector.quant.files import load_quant_config

LOCAL_CHOICE = "Local checkpoint directory…"
DEFAULT_PROMPTS = {"shakespeare": "ROMEO:\n", "tinystories": "Once upon a time, "}


@dataclass
class Session:
    loaded: LoadedModel
    fingerprint: tuple
    prompt: str
    sampling: SamplingSettings
    qc: QuantConfig
    backend: BackendStatus

    @property
    def run_key(self) -> tuple:
        return (str(self.loaded.directory), self.fingerprint, self.qc, self.prompt, self.sampling, self.backend.key)


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def cached_checkpoint(directory: str, _fingerprint: tuple) -> LoadedModel:
    return load_checkpoint(directory)


@st.cache_resource(show_spinner="Calibrating and converting to integers…", max_entries=6)
def cached_emulator(directory: str, fingerprint: tuple, qc: QuantConfig, backend: str = "emulator") -> Emulator:
    return make_backend(backend, cached_checkpoint(directory, fingerprint), qc)


def emulator_for(session: Session) -> Emulator:
    return cached_emulator(str(session.loaded.directory), session.fingerprint, session.qc, session.backend.key)


def kept(key: str, default):
    """The value a sidebar widget had on any page (Streamlit forgets widget state across pages)."""
    return st.session_state.get(f"keep.{key}", default)


def keep(key: str, value):
    st.session_state[f"keep.{key}"] = value
    return value


def _choice(widget, label: str, options: list, key: str, default_index: int = 0, **kwargs):
    previous = kept(key, None)
    index = options.index(previous) if previous in options else default_index
    return keep(key, widget(label, options, index=index, key=key, **kwargs))


def _quant_overrides(defaults: QuantConfig) -> QuantConfig:
    def slider(label: str, lo: int, hi: int, name: str) -> int:
        key = f"q_{name}"
        return keep(key, st.slider(label, lo, hi, kept(key, getattr(defaults, name)), key=key))

    with st.expander("QuantConfig overrides"):
        path = keep("q_file", st.text_input(
            "QuantConfig file (optional)", kept("q_file", ""), key="q_file",
            help="A saved QuantConfig (JSON), e.g. a sensitivity sweep's best_quant_config.json, or a traces "
            "directory of `python -m inspector run`. When set, it replaces the sliders below.",
        )).strip()
        if path:
            qc = load_quant_config(path)  # a QuantConfigError is shown by the caller
            st.caption(f"Using {Path(path).name}; the sliders are ignored.")
            return qc
        st.caption("Bit widths of the integer model. Changing one re-runs the analysis.")
        values = {
            "act_bits": slider("Block activation bits", 3, 12, "act_bits"),
            "spike_bits": slider("BitLinear input bits (graded spikes)", 3, 12, "spike_bits"),
            "internal_bits": slider("MLGRU / GLU internal bits", 6, 16, "internal_bits"),
            "residual_bits": slider("Residual stream bits", 3, 16, "residual_bits"),
            "state_bits": slider("MLGRU state bits", 6, 24, "state_bits"),
            "gate_frac_bits": slider("Gate fraction bits", 4, 16, "gate_frac_bits"),
            "lut_bits": slider("SiLU table output bits", 6, 24, "lut_bits"),
            "state_headroom": keep("q_headroom", st.select_slider(
                "State headroom", [1.0, 1.5, 2.0, 4.0, 8.0], kept("q_headroom", defaults.state_headroom), key="q_headroom"
            )),
            "pow2_scales": keep("q_pow2", st.toggle("Power-of-two scales (shift-only)", kept("q_pow2", defaults.pow2_scales), key="q_pow2")),
        }
    return defaults.with_overrides(values)


def render_sidebar() -> Session | None:
    samples = sample_models()
    with st.sidebar:
        st.header("Model")
        choice = _choice(st.selectbox, "Model", [*samples, LOCAL_CHOICE], "model_choice")
        if choice == LOCAL_CHOICE:
            typed = keep("checkpoint_dir", st.text_input(
                "Checkpoint directory",
                kept("checkpoint_dir", ""),
                key="checkpoint_dir",
                placeholder="/path/to/MMfreeLM-370M",
                help="A local directory with config.json, model.safetensors (or shards) and tokenizer.json.",
            ))
            if not typed.strip():
                st.info("Type the path of a local checkpoint directory.")
                return None
            directory = Path(typed.strip()).expanduser()
        else:
            directory = samples[choice]
        fingerprint = checkpoint_fingerprint(directory)
        try:
            loaded = cached_checkpoint(str(directory), fingerprint)
        except InspectorError as exc:
            st.error(f"Cannot load this checkpoint. {exc}")
            return None
        st.caption(model_caption(loaded))

        statuses = backend_statuses()
        labels = {s.label: s for s in statuses}
        label = _choice(st.radio, "Backend", list(labels), "backend", help="Where the integer model runs.")
        backend = labels[label]
        if not backend.available:
            st.warning(f"{backend.label} is unavailable: {backend.reason}")

        st.header("Prompt")
        prompt_key = f"prompt_{loaded.name}"
        prompt = keep(prompt_key, st.text_area(
            "Prompt", kept(prompt_key, DEFAULT_PROMPTS.get(loaded.name, "The ")), key=prompt_key, height=90
        ))
        st.header("Sampling")
        tokens = keep("max_new_tokens", st.slider(
            "Tokens to generate", 1, min(256, MAX_NEW_TOKENS), kept("max_new_tokens", 32), key="max_new_tokens"
        ))
        temperature = keep("temperature", st.slider(
            "Temperature (0 = greedy)", 0.0, 2.0, kept("temperature", 0.8), 0.05, key="temperature"
        ))
        top_k = keep("top_k", st.number_input("Top-k (0 = off)", 0, loaded.config.vocab_size, kept("top_k", 40), key="top_k"))
        seed = keep("seed", st.number_input("Seed", 0, 2**31 - 1, kept("seed", 0), key="seed"))
        try:
            qc = _quant_overrides(QuantConfig())
        except InspectorError as exc:
            st.error(str(exc))
            return None
    sampling = SamplingSettings(int(tokens), float(temperature), int(top_k), int(seed))
    return Session(loaded, fingerprint, prompt, sampling, qc, backend)


def model_caption(loaded: LoadedModel) -> str:
    cfg = loaded.config
    params = loaded.model.num_parameters()
    text = f"{params / 1e6:.2f} M parameters · {cfg.num_hidden_layers} layers · hidden {cfg.hidden_size} · vocab {cfg.vocab_size}"
    if loaded.card and "val_bits_per_char" in loaded.card:
        text += f" · val {loaded.card['val_bits_per_char']} bits/char on {loaded.card.get('corpus', '?')}"
    return text
