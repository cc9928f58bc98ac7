"""The sidebar shown on every page: model, backend, prompt, sampling and QuantConfig overrides.

It returns a `Session` (or None when no model could be loaded or a setting is invalid, after showing
why next to the input; `settings_problems()` tells the page what to say at its top). The settings
are mirrored in the URL's query parameters, so a reload or a shared link restores them. Models and their
backends are cached with `st.cache_resource`, keyed by the directory, its files' sizes and mtimes
and the QuantConfig, so switching pages never reloads or re-converts anything.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from inspector.backends.base import BackendBase, BackendStatus, backend_statuses, make_backend
from inspector.compare.analysis import GENERATED_WINDOW, Window
from inspector.errors import CheckpointError, InspectorError
from inspector.lm.catalog import checkpoint_fingerprint, sample_models
from inspector.lm.checkpoint import LoadedModel, ignored_keys_note, load_checkpoint
from inspector.lm.generate import MAX_NEW_TOKENS, MAX_SEED, SamplingSettings
from inspector.lm.paths import Access, checkpoint_directory
from inspector.quant.config import QUANT_PRESETS, QuantConfig, field_info
from inspector.quant.files import load_quant_config
from inspector.quant.messaging import GROUPS as MESSAGING_GROUPS
from inspector.serve.keyed_lock import KeyedLocks
from inspector.ui.numbers import number_box
from inspector.ui.text import plain
from inspector.ui.url_settings import (
    HEADROOMS,
    MAX_TOKENS_IN_UI,
    MAX_VTH,
    QUANT_FIELDS,
    QUANT_SLIDERS,
    Field,
    fields,
    parse_query,
    quant_key,
    query_values,
    to_query,
    whole_number,
)

LOCAL_CHOICE = "Local checkpoint directory…"
URL_LOCAL = "local"  # the model choice LOCAL_CHOICE in a link
# Which tokens keep per-neuron detail (tensors, rasters, state histograms): the rest keep per-token
# summaries only, which is what bounds a long prompt's memory.
WINDOWS: dict[Window, str] = {
    GENERATED_WINDOW: "the generated tokens",
    64: "the last 64 tokens",
    256: "the last 256 tokens",
    1024: "the last 1,024 tokens",
    4352: "every token",
}
DEFAULT_PROMPTS = {"shakespeare": "ROMEO:\n", "tinystories": "Once upon a time, "}


@dataclass
class Session:
    loaded: LoadedModel
    fingerprint: tuple
    prompt: str
    sampling: SamplingSettings
    qc: QuantConfig
    backend: BackendStatus
    window: Window = GENERATED_WINDOW

    @property
    def run_key(self) -> tuple:
        return (str(self.loaded.directory), self.fingerprint, self.qc, self.prompt, self.sampling, self.backend.key, self.window)


# Loaded models, shared by every session: four at most, least recently used dropped first. Not
# st.cache_resource: a first load draws a progress bar, and Streamlit's cache refuses functions that
# draw into an element made outside them.
MAX_MODELS = 4
_MODELS: "OrderedDict[tuple, LoadedModel]" = OrderedDict()
_MODELS_LOCK = threading.Lock()
_LOADS = KeyedLocks()  # two sessions asking for the same model load it once
# A safety net, not a limit on loading: a session waiting for another session's load gives up
# after this long with a message (a 2.7B checkpoint loads in about a minute here).
LOAD_WAIT_S = 20 * 60


def cached_checkpoint(directory: str, fingerprint: tuple, on_progress=None, on_wait=None) -> LoadedModel:
    """The model of `directory` (keyed by its files' fingerprint), loaded once per process.

    `on_wait(seconds)` is called while another session loads the same model (see
    `inspector.serve.keyed_lock`: the wait stays interruptible and ends after `LOAD_WAIT_S`)."""
    key = (str(directory), fingerprint)
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    with _LOADS.hold(key, on_wait, LOAD_WAIT_S, what="another session loading this model"):
        with _MODELS_LOCK:
            if key in _MODELS:
                return _MODELS[key]
        loaded = load_checkpoint(directory, on_progress=on_progress)
        with _MODELS_LOCK:
            _MODELS[key] = loaded
            while len(_MODELS) > MAX_MODELS:
                _MODELS.popitem(last=False)
    return loaded


def load_with_progress(directory: Path, fingerprint: tuple) -> LoadedModel:
    """The shared model; a first load shows a progress bar over the checkpoint's tensors."""
    bar = st.empty()

    def on_progress(done: int, total: int, key: str) -> None:
        bar.progress(done / total, text=f"Loading tensor {done}/{total}: {key}")

    def on_wait(seconds: float) -> None:  # redrawn every poll: where Streamlit can stop this session
        bar.progress(0.0, text=f"Waiting for another session that is loading this model ({seconds:.0f} s)…")

    try:
        return cached_checkpoint(str(directory), fingerprint, on_progress, on_wait)
    finally:
        bar.empty()


@st.cache_resource(show_spinner="Calibrating and converting to integers…", max_entries=6)
def cached_backend(directory: str, fingerprint: tuple, qc: QuantConfig, backend: str = "emulator") -> BackendBase:
    return make_backend(backend, cached_checkpoint(directory, fingerprint), qc)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def server_is_shared() -> bool:
    """Whether the app listens beyond this machine (`make run HOST=0.0.0.0`): then local checkpoint
    paths need INSPECTOR_MODEL_ROOTS (see inspector.lm.paths)."""
    address = st.get_option("server.address")  # None: Streamlit's default, every interface
    return address not in LOOPBACK


def app_access() -> Access:
    """Where the paths a visitor types may point: shared mode (roots enforced) when the app listens
    beyond this machine or INSPECTOR_MODEL_ROOTS is set; a single user's local app otherwise."""
    return Access.for_server(server_is_shared())


def backend_for(session: Session) -> BackendBase:
    return cached_backend(str(session.loaded.directory), session.fingerprint, session.qc, session.backend.key)


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


def _apply_preset() -> None:
    """A preset just chosen: every QuantConfig widget takes that preset's value (then the user may edit)."""
    preset = QuantConfig.preset(st.session_state["q_preset"])
    values = {quant_key(name): getattr(preset, name) for name in QUANT_FIELDS}
    for key, value in values.items():
        st.session_state[key] = value
        st.session_state[f"keep.{key}"] = value


def _quant_overrides() -> QuantConfig | None:
    """The QuantConfig the sidebar sets; None (after saying why, next to the box) when its file is refused."""
    with st.expander("QuantConfig overrides", expanded=bool(kept("q_file", "").strip())):
        path = keep("q_file", st.text_input(
            "QuantConfig file (optional)", kept("q_file", ""), key="q_file",
            help="A saved QuantConfig (JSON), e.g. a sensitivity sweep's best_quant_config.json, or a traces "
            "directory of `python -m inspector run`. When set, it replaces the sliders below.",
        )).strip()
        if path:
            try:
                notes: list[str] = []
                qc = load_quant_config(path, app_access(), notes.append)
            except InspectorError as exc:
                _problem(str(exc))
                return None
            st.caption(f"Using {plain(Path(path).name)}; the sliders are ignored.")
            for note in notes:
                st.caption(plain(note[0].upper() + note[1:] + "."))
            return qc
        preset = _choice(st.selectbox, "Preset", list(QUANT_PRESETS), "q_preset", on_change=_apply_preset)
        st.caption(QUANT_PRESETS[preset]["description"])
        defaults = QuantConfig.preset(preset)

        def slider(name: str) -> int:
            label, lo, hi = QUANT_SLIDERS[name]
            key = quant_key(name)
            return keep(key, st.slider(label, lo, hi, kept(key, getattr(defaults, name)), key=key))

        st.caption("Bit widths of the integer model. Changing one re-runs the analysis.")
        values = {name: slider(name) for name in QUANT_SLIDERS}
        headroom = quant_key("state_headroom")
        values["state_headroom"] = keep(headroom, st.select_slider(
            field_info("state_headroom").label, list(HEADROOMS), kept(headroom, defaults.state_headroom), key=headroom,
            help="The MLGRU state's scale puts the calibrated maximum at 1/headroom of the register's range. "
            "Below 1 the calibrated maximum lies beyond the range, so states clip.",
        ))
        pow2 = quant_key("pow2_scales")
        values["pow2_scales"] = keep(
            pow2, st.toggle(field_info("pow2_scales").label, kept(pow2, defaults.pow2_scales), key=pow2),
        )
        rules = list(field_info("scale_rule").choices)
        values["scale_rule"] = _choice(
            st.selectbox, field_info("scale_rule").label, rules, quant_key("scale_rule"), rules.index(defaults.scale_rule),
            help="max_code: max|x| / (2^(b-1) - 1), nothing calibrated clips. study: max|x| / (2^(b-1) - 0.5), "
            "the paper's GPU study (calculate_qparams).",
        )
        messaging = _messaging_widgets(defaults)
    return None if messaging is None else defaults.with_overrides(values | messaging)


def _messaging_widgets(defaults: QuantConfig) -> dict | None:
    """Event-driven messaging per sending neuron group: mode and threshold (inspector.quant.messaging);
    None when a threshold box holds an invalid value (said under it)."""
    st.caption(
        "Event-driven messaging of each neuron group: dense sends every nonzero code; delta (sigma-delta, as Lava's "
        "lava.proc.sdn) sends only changes of at least vth codes; threshold sends only codes of at least vth."
    )
    values, invalid = {}, False
    for key in MESSAGING_GROUPS:
        mode, threshold = f"messaging_{key}", f"vth_{key}"
        left, right = st.columns([3, 2])
        with left:
            modes = list(field_info(mode).choices)
            values[mode] = _choice(
                st.selectbox, field_info(mode).label, modes, quant_key(mode), modes.index(getattr(defaults, mode)),
            )
        with right:
            widget = quant_key(threshold)
            vth = number_box("vth (codes)", 0, MAX_VTH, int(kept(widget, getattr(defaults, threshold))), key=widget)
            if vth is None:  # said under the box; nothing runs on an older value
                invalid = True
            values[threshold] = keep(widget, vth)
    cum_error = quant_key("messaging_cum_error")
    values["messaging_cum_error"] = keep(cum_error, st.toggle(
        field_info("messaging_cum_error").label, kept(cum_error, defaults.messaging_cum_error), key=cum_error,
    ))
    return None if invalid else values


PROBLEMS_KEY = "settings_problems"
URL_READ_KEY = "url_settings_read"


def settings_problems() -> list[str]:
    """What is wrong with the sidebar's current settings (the page shows it at its top)."""
    return st.session_state.get(PROBLEMS_KEY, [])


def _url_spec(samples: dict) -> list[Field]:
    models = tuple(samples) + (URL_LOCAL,)
    backends = tuple(s.key for s in backend_statuses() if s.available)
    return fields(models, backends)


def _read_url(spec: list[Field]) -> None:
    """Once per session: take the settings from the link (reload or shared URL) before any widget exists."""
    if st.session_state.get(URL_READ_KEY):
        return
    st.session_state[URL_READ_KEY] = True
    params = query_values({k: st.query_params.get_all(k) for k in st.query_params})
    statuses = {s.key: s for s in backend_statuses()}
    problems = []
    if params.get("backend") in statuses and not statuses[params["backend"]].available:
        status = statuses[params.pop("backend")]
        problems.append(f"The link asks for the {status.label} backend, which is unavailable here: {status.reason}")
    values, more = parse_query(params, spec)
    problems += more
    labels = {s.key: s.label for s in backend_statuses()}
    for key, value in values.items():
        if key == "model_choice":
            value = LOCAL_CHOICE if value == URL_LOCAL else value
        elif key == "backend":
            value = labels[value]
        st.session_state[f"keep.{key}"] = value
    st.session_state["url_problems"] = problems


def _write_url(spec: list[Field], session: Session | None, choice: str) -> dict[str, str]:
    """Mirror the current settings into the address bar (only those that differ from the defaults)."""
    quant_defaults = {quant_key(n): getattr(QuantConfig(), n) for n in QUANT_FIELDS}
    values = {
        "model_choice": URL_LOCAL if choice == LOCAL_CHOICE else choice,
        "checkpoint_dir": kept("checkpoint_dir", "") if choice == LOCAL_CHOICE else None,
        "backend": session.backend.key if session else None,
        "prompt": session.prompt if session else None,
        "max_new_tokens": kept("max_new_tokens", 32),
        "temperature": kept("temperature", 0.8),
        "top_k": kept("top_k", 40),
        "seed": kept("seed", 0),
        "ignore_eos": kept("ignore_eos", False),
        **{k: kept(k, v) for k, v in quant_defaults.items()},
        "q_preset": kept("q_preset", "default"),
        "window": kept("window", GENERATED_WINDOW),
    }
    defaults = {
        "model_choice": next(iter(sample_models()), None), "backend": "emulator", "max_new_tokens": 32, "temperature": 0.8,
        "top_k": 40, "seed": 0, "ignore_eos": False, "q_preset": "default", "window": GENERATED_WINDOW,
        **quant_defaults,
    }
    if session is not None:
        defaults["prompt"] = DEFAULT_PROMPTS.get(session.loaded.name, "The ")
    query = to_query(values, spec, defaults)
    if query != {k: st.query_params[k] for k in st.query_params}:
        st.query_params.from_dict(query)
    return query


def render_sidebar() -> Session | None:
    samples = sample_models()
    spec = _url_spec(samples)
    _read_url(spec)
    st.session_state[PROBLEMS_KEY] = []
    with st.sidebar:
        url_notes = st.container()
        session = _sidebar(samples)
    query = _write_url(spec, session, kept("model_choice", None))
    # What was wrong with the link stays said until the user changes a setting.
    problems = st.session_state.get("url_problems", [])
    if problems and st.session_state.setdefault("url_problems_query", query) == query:
        for problem in problems:
            url_notes.warning(plain(problem))
    else:
        st.session_state.pop("url_problems", None)
    return session


def _problem(message: str) -> None:
    """A setting that cannot run: said next to the input and, by the page, at its top (as text: it may quote input)."""
    st.error(plain(message))
    st.session_state[PROBLEMS_KEY] = [*settings_problems(), message]


def whole_number_box(label: str, key: str, lo: int, hi: int, default: int) -> int | None:
    """A whole number typed as text and read by the same rule as a link's value (`url_settings.whole_number`).

    Not st.number_input: a browser's number box reads `1e30` as 1 for an integer box and refuses an
    out-of-range number without telling us (it keeps the old value). Here every value reaches us and
    a bad one is said next to the box, naming it; None then, so nothing runs on an older value."""
    text = st.text_input(label, str(kept(key, default)), key=key)
    try:
        return keep(key, whole_number(text, lo, hi))
    except ValueError as exc:
        _problem(f"{label.split(' (')[0]}: {exc}.")
        return None


def _sidebar(samples: dict) -> Session | None:
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
        try:
            directory = checkpoint_directory(typed, shared=server_is_shared())
        except CheckpointError as exc:
            st.error(f"Cannot load this checkpoint. {plain(exc)}")
            return None
    else:
        directory = samples[choice]
    fingerprint = checkpoint_fingerprint(directory)
    try:
        loaded = load_with_progress(directory, fingerprint)
    except InspectorError as exc:
        st.error(f"Cannot load this checkpoint. {plain(exc)}")
        return None
    st.caption(model_caption(loaded))
    if loaded.ignored_config_keys:
        st.caption(ignored_keys_note(loaded.ignored_config_keys) + ".")

    statuses = backend_statuses()
    labels = {s.label: s for s in statuses if s.available}
    label = _choice(st.radio, "Backend", list(labels), "backend", help="Where the integer model runs.")
    backend = labels[label]
    for status in statuses:
        if not status.available:  # said once, here; it cannot be selected
            st.caption(f"**{status.label}** is not available here: {status.reason}")

    st.header("Prompt")
    prompt_key = f"prompt_{loaded.name}"
    if "keep.prompt" in st.session_state:  # a prompt from the link applies to the model it came with
        st.session_state.setdefault(f"keep.{prompt_key}", st.session_state.pop("keep.prompt"))
    prompt = keep(prompt_key, st.text_area(
        "Prompt", kept(prompt_key, DEFAULT_PROMPTS.get(loaded.name, "The ")), key=prompt_key, height=90
    ))
    st.header("Sampling")
    tokens = keep("max_new_tokens", st.slider(
        "Tokens to generate", 1, min(MAX_TOKENS_IN_UI, MAX_NEW_TOKENS), kept("max_new_tokens", 32), key="max_new_tokens"
    ))
    temperature = keep("temperature", st.slider(
        "Temperature (0 = greedy)", 0.0, 2.0, kept("temperature", 0.8), 0.05, key="temperature"
    ))
    top_k = whole_number_box(f"Top-k (0 = off, at most {loaded.config.vocab_size:,})", "top_k", 0, loaded.config.vocab_size, 40)
    seed = whole_number_box(f"Seed (0 to {MAX_SEED:,})", "seed", 0, MAX_SEED, 0)
    ignore_eos = keep("ignore_eos", st.checkbox(
        "Continue past end-of-sequence", kept("ignore_eos", False), key="ignore_eos",
        help=f"Generation stops at the checkpoint's end-of-sequence token (id {', '.join(map(str, loaded.eos_token_ids))}), "
        "as Hugging Face's generate does; tick to go on to the token limit.",
    ))
    window = _choice(
        st.selectbox, "Per-neuron detail for", list(WINDOWS), "window", format_func=WINDOWS.get,
        help="Tensors, spike rasters and state histograms are kept for these tokens; every other token keeps "
        "per-token counts (activity, clipping, underflow, error metrics). Long prompts need far less memory this way.",
    )
    # Every control stays drawn while one is invalid (the user can fix it, or change another); nothing runs then.
    valid = top_k is not None and seed is not None
    if valid:
        sampling = SamplingSettings(int(tokens), float(temperature), int(top_k), int(seed), bool(ignore_eos))
        try:
            sampling.validate(loaded.config.vocab_size)
        except InspectorError as exc:
            _problem(str(exc)[0].upper() + str(exc)[1:] + ".")
            valid = False
    try:
        qc = _quant_overrides()
    except InspectorError as exc:  # e.g. a threshold beyond the chosen spike width: QuantConfig names the field
        _problem(str(exc))
        qc = None
    if qc is None or not valid:
        return None
    return Session(loaded, fingerprint, prompt, sampling, qc, backend, window)


def model_caption(loaded: LoadedModel) -> str:
    cfg = loaded.config
    params = loaded.model.num_parameters()
    text = f"{params / 1e6:.2f} M parameters · {cfg.num_hidden_layers} layers · hidden {cfg.hidden_size} · vocab {cfg.vocab_size}"
    if loaded.card and "val_bits_per_char" in loaded.card:
        text += f" · val {loaded.card['val_bits_per_char']} bits/char on {loaded.card.get('corpus', '?')}"
    return text
