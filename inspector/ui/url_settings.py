"""The app's settings as URL query parameters: a reload or a shared link restores them.

A URL is typed by anyone, so every value read from it is checked against the same ranges the
sidebar's widgets allow; a bad value is dropped with a message saying which and why, and the
setting keeps its default. Nothing here imports Streamlit: the sidebar reads and writes
`st.query_params` with these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from inspector.lm.generate import MAX_SEED
from inspector.quant.config import QUANT_PRESETS, SCALE_RULES, QuantConfig
from inspector.quant.messaging import GROUPS as MESSAGING_GROUPS
from inspector.quant.messaging import MODES as MESSAGING_MODES

MAX_PROMPT_CHARS_IN_URL = 4000  # longer prompts are left out of the link (browsers and proxies cap URLs)
MAX_PATH_CHARS = 1024
MAX_TOKENS_IN_UI = 256
HEADROOMS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0)

_QUANT_LABELS = {
    "act_bits": "Block activation bits",
    "spike_bits": "BitLinear input bits (graded spikes)",
    "internal_bits": "MLGRU / GLU internal bits",
    "residual_bits": "Residual stream bits",
    "state_bits": "MLGRU state bits",
    "gate_frac_bits": "Gate fraction bits",
    "lut_bits": "SiLU table output bits",
}
# QuantConfig fields the sidebar exposes: (label, min, max). The sliders and the URL share these, and
# the limits are QuantConfig's own (`QuantConfig.limits`), which every other input (A/B box, files,
# the CLI) is checked against too.
QUANT_SLIDERS: dict[str, tuple[str, int, int]] = {
    name: (label, *QuantConfig().limits()[name]) for name, label in _QUANT_LABELS.items()
}

# The largest messaging threshold a widget or link accepts: the largest |code| at the widest spike_bits
# slider setting; QuantConfig then checks it against the group's own width and names the field if beyond.
MAX_VTH = 1 << (QUANT_SLIDERS["spike_bits"][2] - 1)


def messaging_defaults() -> dict[str, Any]:
    """The messaging widgets' keys and default values (mode, vth per group; cum_error)."""
    qc = QuantConfig()
    values: dict[str, Any] = {f"q_msg_{g}": getattr(qc, f"messaging_{g}") for g in MESSAGING_GROUPS}
    values |= {f"q_vth_{g}": getattr(qc, f"vth_{g}") for g in MESSAGING_GROUPS}
    return values | {"q_cum_error": qc.messaging_cum_error}


@dataclass(frozen=True)
class Field:
    """One setting: its URL parameter, the sidebar's state key, and how to read and write it."""

    param: str
    key: str  # the sidebar widget's key (its remembered value lives under keep.<key>)
    parse: Callable[[str], Any]  # raises ValueError with a reason
    dump: Callable[[Any], str] = str


def whole_number(text: str, lo: int, hi: int) -> int:
    """A whole number in lo..hi written in plain digits (`1e30`, `1.0`, `0x10` are refused, not rounded)."""
    stripped = str(text).strip()
    if not stripped.lstrip("+-").isdigit() or not stripped.isascii() or len(stripped) > 40:
        raise ValueError(f"{stripped[:40]!r} is not a whole number")
    value = int(stripped)
    if not lo <= value <= hi:
        raise ValueError(f"{value:,} is outside {lo:,}..{hi:,}")
    return value


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    return lambda text: whole_number(text, lo, hi)


def _float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a number") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"{value} is outside {lo}..{hi}")
        return value

    return parse


def _one_of(options: tuple, cast: Callable[[str], Any] = str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = cast(text.strip())
        except ValueError:
            value = None
        if value not in options:
            raise ValueError(f"{text[:40]!r} is not one of {', '.join(map(str, options))}")
        return value

    return parse


def _text(limit: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) > limit:
            raise ValueError(f"it is {len(text):,} characters long; the limit is {limit:,}")
        if "\x00" in text:
            raise ValueError("it contains a NUL character")
        return text

    return parse


def _bool(text: str) -> bool:
    if text.strip().lower() in ("1", "true", "on"):
        return True
    if text.strip().lower() in ("0", "false", "off"):
        return False
    raise ValueError(f"{text[:40]!r} is not 1 or 0")


WINDOW_CHOICES = ("generated", 64, 256, 1024, 4352)  # the sidebar's "Per-neuron detail for" options


def _window(text: str) -> str | int:
    value = text.strip()
    parsed: str | int = int(value) if value.isdigit() else value
    if parsed not in WINDOW_CHOICES:
        raise ValueError(f"{text[:40]!r} is not one of {', '.join(map(str, WINDOW_CHOICES))}")
    return parsed


def fields(models: tuple[str, ...], backends: tuple[str, ...]) -> list[Field]:
    """Every setting that goes into the URL. `models`: the choices of the model box (their URL
    names); `backends`: the keys of the backends available here."""
    return [
        Field("model", "model_choice", _one_of(models)),
        Field("path", "checkpoint_dir", _text(MAX_PATH_CHARS)),
        Field("backend", "backend", _one_of(backends)),
        Field("prompt", "prompt", _text(MAX_PROMPT_CHARS_IN_URL)),
        Field("tokens", "max_new_tokens", _int_in(1, MAX_TOKENS_IN_UI)),
        Field("temperature", "temperature", _float_in(0.0, 2.0), lambda v: f"{v:g}"),
        Field("top_k", "top_k", _int_in(0, 10**9)),
        Field("seed", "seed", _int_in(0, MAX_SEED)),
        Field("ignore_eos", "ignore_eos", _bool, lambda v: "1" if v else "0"),
        *[Field(name, f"q_{name}", _int_in(lo, hi)) for name, (_, lo, hi) in QUANT_SLIDERS.items()],
        Field("headroom", "q_headroom", _one_of(HEADROOMS, float), lambda v: f"{v:g}"),
        Field("pow2", "q_pow2", _bool, lambda v: "1" if v else "0"),
        Field("preset", "q_preset", _one_of(tuple(QUANT_PRESETS))),
        Field("scale_rule", "q_scale_rule", _one_of(SCALE_RULES)),
        Field("window", "window", _window, str),
        *[Field(f"messaging_{g}", f"q_msg_{g}", _one_of(MESSAGING_MODES)) for g in MESSAGING_GROUPS],
        *[Field(f"vth_{g}", f"q_vth_{g}", _int_in(0, MAX_VTH)) for g in MESSAGING_GROUPS],
        Field("cum_error", "q_cum_error", _bool, lambda v: "1" if v else "0"),
    ]


REPEATED = object()  # a parameter given more than once: refused, since a link must not say two things


def query_values(params: Mapping[str, list[str]]) -> dict[str, Any]:
    """Each parameter's value from lists of values (`st.query_params.get_all`); REPEATED when there are several."""
    return {k: (values[0] if len(values) == 1 else REPEATED) for k, values in params.items() if values}


def parse_query(params: Mapping[str, str], spec: list[Field]) -> tuple[dict[str, Any], list[str]]:
    """Values (by widget key) for the parameters that are valid, and one message per invalid one."""
    values, problems = {}, []
    known = {f.param for f in spec}
    for f in spec:
        if f.param not in params:
            continue
        raw = params[f.param]
        if raw is REPEATED:
            problems.append(f"{f.param} appears more than once in the link, so none of its values was used.")
            continue
        try:
            values[f.key] = f.parse(raw if isinstance(raw, str) else str(raw))
        except ValueError as exc:
            problems.append(f"{f.param} from the link was ignored: {exc}.")
    unknown = sorted(p for p in params if p not in known)
    if unknown:
        problems.append(f"Unknown link parameters ignored: {', '.join(p[:30] for p in unknown[:5])}.")
    return values, problems


def to_query(values: Mapping[str, Any], spec: list[Field], defaults: Mapping[str, Any] | None = None) -> dict[str, str]:
    """URL parameters for the values (by widget key) that differ from their defaults."""
    defaults = defaults or {}
    query = {}
    for f in spec:
        if f.key not in values or values[f.key] is None:
            continue
        value = values[f.key]
        if f.key in defaults and defaults[f.key] == value:
            continue
        text = f.dump(value)
        try:
            f.parse(text)
        except ValueError:
            continue  # e.g. a prompt too long for a link: left out rather than written broken
        query[f.param] = text
    return query
