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
from inspector.quant.config import QUANT_PRESETS, RETIRED_FIELDS, FieldInfo, QuantConfig, field_infos
from inspector.quant.messaging import GROUPS as MESSAGING_GROUPS

MAX_PROMPT_CHARS_IN_URL = 4000  # longer prompts are left out of the link (browsers and proxies cap URLs)
MAX_PATH_CHARS = 1024
MAX_TOKENS_IN_UI = 256
HEADROOMS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0)  # the steps of the state-headroom widget ("steps" control)

# The QuantConfig fields the sidebar sets and links carry: those whose FieldInfo names a URL parameter.
QUANT_FIELDS: dict[str, FieldInfo] = {name: info for name, info in field_infos().items() if info.url}
# The sliders: (label, min, max), the limits QuantConfig's own (`QuantConfig.limits`), which every
# other input (A/B box, files, the CLI) is checked against too.
QUANT_SLIDERS: dict[str, tuple[str, int, int]] = {
    name: (info.label, *QuantConfig().limits()[name]) for name, info in QUANT_FIELDS.items() if info.control == "slider"
}
# Every slider at its top: the widest setting a widget or link may ask for. A limit that follows
# another field (a messaging threshold follows its group's width) is read here for the widget and the
# link; QuantConfig then checks it against the chosen settings and names the field if beyond.
WIDEST = QuantConfig().with_overrides({name: hi for name, (_, _, hi) in QUANT_SLIDERS.items()})
MAX_VTH = max(1 << (getattr(WIDEST, group.width) - 1) for group in MESSAGING_GROUPS.values())


def quant_key(name: str) -> str:
    """The sidebar widget's key of a QuantConfig field: q_<its URL parameter>."""
    return f"q_{QUANT_FIELDS[name].url}"


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
        Field("preset", "q_preset", _one_of(tuple(QUANT_PRESETS))),
        Field("window", "window", _window, str),
        *[quant_field(name) for name in QUANT_FIELDS],
    ]


def quant_field(name: str) -> Field:
    """A QuantConfig field as a link parameter, read by its type and FieldInfo: whole numbers within
    the widest limits, the headroom's steps, on/off, or one of the field's choices."""
    info, kind = QUANT_FIELDS[name], type(getattr(QuantConfig(), name))
    if kind is bool:
        return Field(info.url, quant_key(name), _bool, lambda v: "1" if v else "0")
    if info.control == "steps":
        return Field(info.url, quant_key(name), _one_of(HEADROOMS, float), lambda v: f"{v:g}")
    if kind is str:
        return Field(info.url, quant_key(name), _one_of(info.choices))
    lo, hi = info.bounds(WIDEST)
    return Field(info.url, quant_key(name), _int_in(lo, hi))


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
    for param in sorted(set(params) & set(RETIRED_FIELDS) - known):
        problems.append(f"{param} from the link was ignored: it is no longer a setting ({RETIRED_FIELDS[param]}).")
    unknown = sorted(p for p in params if p not in known and p not in RETIRED_FIELDS)
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
