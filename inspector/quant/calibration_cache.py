"""Calibration results on disk, so a checkpoint opens in seconds the second time.

Calibration (a float64 pass of the float model over the calibration text, `inspector.quant.calibrate`)
is the slowest step of opening a large model: 8-9 s for MMfreeLM-370M. Its result, one max|x| per
site, is a few KB and depends only on:
- the weights: a SHA-256 of every weight file's bytes (`WeightDigest`; a header or a file size would
  miss a changed weight), read in 16 MB pieces in a background thread while the checkpoint loads (hashlib releases
  the GIL), so it costs no wall time on a 2-core machine;
- config.json's values and the tokenizer (the text's tokens, the BOS policy);
- the QuantConfig fields calibration reads (`CALIBRATION_FIELDS` below: a field added to
  QuantConfig for anything else does not invalidate the cache);
- the calibration text;
- the code: a hash of the sources that compute the maxima (`code_version`), and the torch version.

Entries live in $LOIHI_INSPECTOR_CACHE (default ~/.cache/loihi-lm-inspector)/calibration/<key>.json,
written atomically (a temporary file, then a rename) and read as JSON only. A file that does not parse
or does not hold what its key promises is ignored with a note, and the calibration is recomputed and
written again. The maxima are float32 values held as Python floats; JSON writes them exactly
(shortest round-trip repr), so a cached calibration gives bit-identical integers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from inspector.disk_cache import cache_dir
from inspector.quant.config import QuantConfig

CACHE_FORMAT = 1
MAX_ENTRY_BYTES = 64 * 2**20  # an entry is a few KB per layer; anything far larger is not one of ours
# The sources whose code decides the maxima: the calibration pass, the float model it runs, the site
# names, ternary quantization of the BitLinear weights, and tokenization of the text.
CALIBRATION_SOURCES = (
    "quant/calibrate.py", "lm/model.py", "schema.py", "lm/ternary.py", "lm/tokenizer.py", "quant/calibration_cache.py",
)


# The QuantConfig fields calibration reads (the maxima are of the float model, so no bit width is among
# them). The calibration cache is keyed by exactly these (`inspector.quant.calibration_cache`): list a
# field here when calibration starts to depend on it.
CALIBRATION_FIELDS = ("calibration_tokens",)


def calibration_settings(qc: QuantConfig) -> dict[str, Any]:
    """The values of `CALIBRATION_FIELDS` in `qc`: what `calibrate_for` passes on to `calibrate`."""
    return {name: getattr(qc, name) for name in CALIBRATION_FIELDS}


def code_version() -> str:
    """A hash of the sources that compute the maxima (a change to any of them never serves stale maxima)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in CALIBRATION_SOURCES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return cache_dir() / "calibration"


@dataclass(frozen=True)
class CalibrationKey:
    digest: str  # the key, and the entry's file name
    spec: dict  # what went into it (stored beside the maxima, so an entry can be checked and explained)


def calibration_key(
    weights_digest: str, config: dict, tokenizer_json: str, qc: QuantConfig, text: str,
) -> CalibrationKey:
    spec = {
        "format": CACHE_FORMAT,
        "weights_sha256": weights_digest,
        "config": config,
        "tokenizer_sha256": hashlib.sha256(tokenizer_json.encode()).hexdigest(),
        "quant": calibration_settings(qc),
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "code": code_version(),
        "torch": torch.__version__,
    }
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return CalibrationKey(hashlib.sha256(blob).hexdigest()[:32], spec)


NoteFn = Callable[[str], None]


def load_calibration(key: CalibrationKey, note: NoteFn, root: Path | None = None) -> Optional[dict[str, float]]:
    """The cached maxima for `key`, or None (absent; or unreadable, said through `note`)."""
    path = (root or cache_root()) / f"{key.digest}.json"
    try:
        if path.stat().st_size > MAX_ENTRY_BYTES:
            note(f"calibration cache file {path} is larger than any entry can be; ignored, recomputing")
            return None
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        note(f"calibration cache file {path} cannot be read ({exc.strerror}); recomputing")
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
        if not isinstance(record, dict) or record.get("spec") != json.loads(json.dumps(key.spec, default=str)):
            raise ValueError("it belongs to another calibration")
        maxima = record["maxima"]
        if not isinstance(maxima, dict) or not maxima:
            raise ValueError("no maxima")
        for name, value in maxima.items():
            if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"entry {name!r} is not a number")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"entry {name!r} is not a finite magnitude")
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        note(f"calibration cache file {path} is corrupt ({str(exc)[:80]}); ignored, recomputing")
        return None
    return {name: float(value) for name, value in maxima.items()}


def save_calibration(key: CalibrationKey, maxima: dict[str, float], root: Path | None = None) -> Optional[Path]:
    """Write the entry atomically; a cache that cannot be written is skipped (the run goes on), returning None."""
    folder = root or cache_root()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key.digest}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"spec": key.spec, "maxima": maxima}, handle, default=str)
            os.replace(tmp, folder / f"{key.digest}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return None
    return folder / f"{key.digest}.json"
