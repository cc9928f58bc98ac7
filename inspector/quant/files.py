"""QuantConfigs as JSON files: what a bit-width search saves and the sidebar and `--quant-file` load.

A file holds `{"quant_config": {field: value, ...}}` (plus any notes the writer adds). Loading also
accepts a bare `{field: value}` object and a traces directory written by `python -m inspector run`
(its `run.json` records the QuantConfig), so any saved run can be re-evaluated. Fields a file
leaves out take their defaults, so files written before a new QuantConfig field keep loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inspector.quant.config import QuantConfig, QuantConfigError


def save_quant_config(qc: QuantConfig, path: str | Path, **notes: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quant_config": qc.to_dict(), **notes}, indent=2) + "\n", encoding="utf-8")
    return path


def load_quant_config(path: str | Path) -> QuantConfig:
    """A QuantConfig from a JSON file or a traces directory; every problem is a QuantConfigError."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "run.json"  # a traces directory (inspector.traces)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuantConfigError(f"cannot read QuantConfig file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise QuantConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise QuantConfigError(f"{path}: expected a JSON object with a 'quant_config' entry")
    fields = data.get("quant_config", data)
    if not isinstance(fields, dict):
        raise QuantConfigError(f"{path}: 'quant_config' must be an object of QuantConfig fields")
    try:
        return QuantConfig().with_overrides(fields)
    except (QuantConfigError, TypeError, ValueError) as exc:
        raise QuantConfigError(f"{path}: {exc}") from None


def quant_spec(spec: str) -> QuantConfig:
    """A QuantConfig from a command-line spec: `default`, a JSON file or run directory, or
    comma-separated `key=value` overrides of the defaults (e.g. `state_bits=16,act_bits=6`)."""
    spec = spec.strip()
    if spec in ("", "default"):
        return QuantConfig()
    if "=" in spec and not Path(spec).exists():
        try:
            return QuantConfig().with_overrides(dict(_parse_pair(pair) for pair in spec.split(",") if pair.strip()))
        except (TypeError, ValueError) as exc:
            raise QuantConfigError(f"{spec!r}: {exc}") from None
    return load_quant_config(spec)


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
    return key.strip(), parse_value(raw.strip())
