"""QuantConfigs as JSON files: what a bit-width search saves and the sidebar and `--quant-file` load.

A file holds `{"quant_config": {field: value, ...}}` (plus any notes the writer adds). Loading also
accepts a bare `{field: value}` object and a traces directory written by `python -m inspector run`
(its `run.json` records the QuantConfig), so any saved run can be re-evaluated. Fields a file
leaves out take their defaults, so files written before a new QuantConfig field keep loading; keys
QuantConfig no longer has (`RETIRED_FIELDS`) are ignored with a note that says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from inspector.lm.paths import MAX_RUN_JSON_BYTES, QUANT_FILE, Access, PathError, checked_path, read_limited
from inspector.quant.config import NoteFn, QuantConfig, QuantConfigError, field_types


def save_quant_config(qc: QuantConfig, path: str | Path, **notes: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quant_config": qc.to_dict(), **notes}, indent=2) + "\n", encoding="utf-8")
    return path


def load_quant_config(path: str | Path, access: Access | None = None, note: NoteFn | None = None) -> QuantConfig:
    """A QuantConfig from a JSON file or a traces directory; every problem is a QuantConfigError.
    `note(text)` hears about keys ignored on the way (see `QuantConfig.with_overrides`).

    The path goes through `inspector.lm.paths.checked_path` first (`access`: where it may lie; default
    anywhere, as for the CLI): devices, FIFOs and files beyond 64 KiB are refused before reading,
    and on a shared server nothing outside the roots is opened, so no message tells what it holds.
    """
    try:
        target = checked_path(path, QUANT_FILE, access or Access.local())
        raw = read_limited(target, MAX_RUN_JSON_BYTES if target.name == "run.json" else QUANT_FILE.max_bytes, QUANT_FILE.what)
    except PathError as exc:
        raise QuantConfigError(str(exc)) from None
    shown = Path(str(path).strip())
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise QuantConfigError(f"{shown} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise QuantConfigError(f"{shown} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise QuantConfigError(f"{shown}: expected a JSON object with a 'quant_config' entry")
    fields = data.get("quant_config", data)
    if not isinstance(fields, dict):
        raise QuantConfigError(f"{shown}: 'quant_config' must be an object of QuantConfig fields")
    try:
        return QuantConfig().with_overrides(fields, note=None if note is None else lambda text: note(f"{shown}: {text}"))
    except (QuantConfigError, TypeError, ValueError) as exc:
        raise QuantConfigError(f"{shown}: {exc}") from None


_OVERRIDE = re.compile(r"\s*[A-Za-z_]\w*\s*=")


def is_override_spec(spec: str) -> bool:
    """Whether `spec` reads as `key=value[,key=value...]` (told apart by its form, never by looking at
    the file system: whether a path exists must not decide, or tell, anything)."""
    parts = [p for p in spec.split(",") if p.strip()]
    return bool(parts) and all(_OVERRIDE.match(p) for p in parts)


def quant_spec(spec: str, access: Access | None = None, note: NoteFn | None = None) -> QuantConfig:
    """A QuantConfig from a command-line or A/B spec: `default`, comma-separated `key=value` overrides of
    the defaults (e.g. `state_bits=16,act_bits=6`), or else a JSON file or run directory (checked with
    `access`, see `load_quant_config`)."""
    spec = spec.strip()
    if spec in ("", "default"):
        return QuantConfig()
    if is_override_spec(spec):
        try:
            pairs = dict(_parse_pair(pair) for pair in spec.split(",") if pair.strip())
            return QuantConfig().with_overrides(pairs, note)
        except (TypeError, ValueError) as exc:
            raise QuantConfigError(f"{spec[:200]!r}: {exc}") from None
    return load_quant_config(spec, access, note)


def parse_setting(key: str, raw: str) -> Any:
    """A QuantConfig field's value from text, read as the field's declared type (a text field keeps
    `1` as text, a number field reads `2` as 2.0). Text that is not of that type, and keys QuantConfig
    does not have, are read by `parse_value`, so the validation names the field and what it must be."""
    kind = field_types().get(key)
    text = raw.strip()
    if kind is str:
        return text
    if kind is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return parse_value(raw)


def parse_value(raw: str) -> Any:
    """`true`/`false`, an int, a float, or the text itself."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    return raw


def _parse_pair(pair: str) -> tuple[str, Any]:
    if "=" not in pair:
        raise QuantConfigError(f"expected key=value, got {pair!r}")
    key, raw = pair.split("=", 1)
    return key.strip(), parse_setting(key.strip(), raw)
