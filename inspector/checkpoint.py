"""Reading and writing checkpoints in the Hugging Face layout of the MMfreeLM releases.

A checkpoint directory holds `config.json`, the weights (`model.safetensors`, or shards listed in
`model.safetensors.index.json`, or a `pytorch_model.bin` read with `torch.load(weights_only=True)`)
and `tokenizer.json`. Nothing is unpickled and nothing is fetched from the network. Every problem is
raised as a `CheckpointError` that names the file and the tensor key, because "size mismatch" alone
does not tell a researcher which of 300 tensors came from the wrong model.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from inspector.backends import available_memory
from inspector.config import HGRNBitConfig, read_config
from inspector.errors import CheckpointError
from inspector.model import HGRNBitForCausalLM
from inspector.paths import checkpoint_directory
from inspector.tokenizer import TOKENIZER_FILE, load_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
CARD_FILE = "card.json"
MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header is JSON of names and shapes: kilobytes, not gigabytes
# Bytes per float parameter while a model is in use: the float32 model, the tensors read from disk
# (freed after loading), the integer model's converted weights and the emulator's float copies of
# the ternary matrices. Measured on the sample models: about 3.5x the float32 size; 4 keeps margin.
BYTES_PER_PARAMETER = 16
SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


@dataclass
class LoadedModel:
    """A model ready to run: float weights, its tokenizer, config and (for sample models) card."""

    model: HGRNBitForCausalLM
    tokenizer: Tokenizer
    config: HGRNBitConfig
    directory: Path
    card: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.directory.name


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(str(path), None, "file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(str(path), None, f"not a valid safetensors file ({exc})") from None


def _read_sharded(index_path: Path) -> dict[str, torch.Tensor]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map: dict[str, str] = index["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(index_path), None, f"not valid JSON: {exc}") from None
    except (KeyError, TypeError):
        raise CheckpointError(str(index_path), "weight_map", "missing or not an object") from None
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.exists():
            raise CheckpointError(str(shard_path), None, f"shard listed in {INDEX_FILE} is missing")
        for key, value in _read_safetensors(shard_path).items():
            if weight_map.get(key) == shard:
                tensors[key] = value
    for key, shard in weight_map.items():
        if key not in tensors:
            raise CheckpointError(str(index_path.parent / shard), key, f"tensor listed in {INDEX_FILE} is not in the shard")
    return tensors


def _read_torch_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # PyTorch's own message advises re-running with weights_only=False, which would execute
        # whatever code the file carries: we name what was refused and never pass that advice on.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            str(path), None,
            f"refused: the file holds pickled Python objects{what} besides tensors, and unpickling them could run code. "
            "Only plain tensors are read from pytorch_model.bin; convert it to model.safetensors on a machine you trust.",
        ) from None
    except Exception as exc:
        raise CheckpointError(str(path), None, f"not a readable PyTorch weights file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(str(path), None, "expected a flat dict of tensors (a state_dict)")
    return state


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Find and read the weight files of a checkpoint directory; returns tensors and the file read."""
    for name, reader in ((WEIGHTS_FILE, _read_safetensors), (INDEX_FILE, _read_sharded), (TORCH_FILE, _read_torch_bin)):
        path = directory / name
        if path.exists():
            return reader(path), path
    raise CheckpointError(
        str(directory / WEIGHTS_FILE), None, f"no weights found (looked for {WEIGHTS_FILE}, {INDEX_FILE}, {TORCH_FILE})"
    )


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Names, dtypes and shapes of the tensors in a safetensors file, from its header alone.

    Reads at most the 8-byte length and the JSON header, so a checkpoint can be checked against its
    config before any tensor (or any model) is allocated.
    """
    try:
        with open(path, "rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) < 8:
                raise CheckpointError(str(path), None, "not a valid safetensors file (shorter than its 8-byte header length)")
            (length,) = struct.unpack("<Q", raw_length)
            if length > MAX_HEADER_BYTES:
                raise CheckpointError(str(path), None, f"not a valid safetensors file (header claims {length:,} bytes)")
            header = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(str(path), None, "file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(str(path), None, "not a valid safetensors file (its header is not JSON)") from None
    except OSError as exc:
        raise CheckpointError(str(path), None, f"cannot be read: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(str(path), None, "not a valid safetensors file (its header is not an object)")
    entries = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            entries[key] = (str(info["dtype"]), tuple(int(d) for d in info["shape"]))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(str(path), key, "not a valid safetensors file (malformed header entry)") from None
    return entries


def expected_shapes(config: HGRNBitConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the config calls for, with its shape, without allocating it (meta device)."""
    with torch.device("meta"):
        model = HGRNBitForCausalLM(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def require_memory(config: HGRNBitConfig, shapes: dict[str, tuple[int, ...]], source: Path) -> None:
    """Refuse a model that would not fit in the memory available now, before building it."""
    parameters = sum(int(torch.Size(shape).numel()) for shape in shapes.values())
    need, free = parameters * BYTES_PER_PARAMETER, available_memory()
    if free is not None and need > free:
        raise CheckpointError(
            str(source), None,
            f"this config describes {parameters / 1e6:,.0f} M parameters (hidden_size {config.hidden_size:,}, "
            f"{config.num_hidden_layers} layers, vocab {config.vocab_size:,}), which would need about "
            f"{need / 2**30:,.1f} GB to load and convert; {free / 2**30:,.1f} GB is available. Nothing was loaded.",
        )


def check_header(shapes: dict[str, tuple[int, ...]], header: dict[str, tuple[str, tuple[int, ...]]], source: Path, partial: bool = False) -> None:
    """Compare a safetensors header with the config's tensors, naming the first offending key.

    `partial`: the header is one shard's, so tensors of other shards are not reported missing.
    """
    for key, shape in shapes.items():
        if key not in header:
            if partial:
                continue
            raise CheckpointError(str(source), key, "missing tensor")
        dtype, got = header[key]
        if got != shape:
            raise CheckpointError(str(source), key, f"shape {got} does not match the config's {shape}")
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(str(source), key, f"dtype {dtype} is not a floating-point type")
    unexpected = sorted(set(header) - set(shapes))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(str(source), unexpected[0], f"unexpected tensor for this config{more}")


def check_headers(directory: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """Check the safetensors file (or every shard) of a directory against the config, headers only."""
    single = directory / WEIGHTS_FILE
    if single.exists():
        check_header(shapes, safetensors_header(single), single)
        return
    index_path = directory / INDEX_FILE
    if not index_path.exists():
        return  # pytorch_model.bin: no header to read; its tensors are checked after loading
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return  # _read_sharded reports what is wrong with the index
    for shard in shards:
        shard_path = directory / shard
        if shard_path.exists():
            check_header(shapes, safetensors_header(shard_path), shard_path, partial=True)


def check_state_dict(model: HGRNBitForCausalLM, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Compare names, shapes and dtypes against the model, naming the first offending key."""
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in tensors:
            raise CheckpointError(str(source), key, "missing tensor")
        got = tensors[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(
                str(source), key, f"shape {tuple(got.shape)} does not match the config's {tuple(ref.shape)}"
            )
        if not got.dtype.is_floating_point:
            raise CheckpointError(str(source), key, f"dtype {got.dtype} is not a floating-point type")
        if not torch.isfinite(got).all():
            raise CheckpointError(str(source), key, "contains NaN or infinite values")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(str(source), unexpected[0], f"unexpected tensor for this config{more}")


def load_checkpoint(directory: str | Path) -> LoadedModel:
    """Load a float model and its tokenizer from a local directory in the HF layout.

    The path is validated first (`inspector.paths`, which also applies INSPECTOR_MODEL_ROOTS), then
    the config, then the weight files' headers against the config and the memory the model needs,
    and only then is anything allocated.
    """
    directory = checkpoint_directory(directory)
    config = read_config(directory / CONFIG_FILE)
    # Before reading any tensor or building the model: do the headers match the config, and
    # does a model of this config fit in memory? (A config can claim any size.)
    shapes = expected_shapes(config)
    check_headers(directory, shapes)
    require_memory(config, shapes, directory / CONFIG_FILE)
    tensors, source = read_weights(directory)
    model = HGRNBitForCausalLM(config)
    check_state_dict(model, tensors, source)
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    model.eval()
    tokenizer = load_tokenizer(directory)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            str(directory / TOKENIZER_FILE),
            None,
            f"tokenizer has {tokenizer.get_vocab_size()} tokens but config vocab_size is {config.vocab_size}",
        )
    card = None
    card_path = directory / CARD_FILE
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(str(card_path), None, f"not valid JSON: {exc}") from None
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, directory=directory, card=card)


def save_checkpoint(
    model: HGRNBitForCausalLM, tokenizer: Tokenizer, directory: str | Path, card: dict[str, Any] | None = None
) -> Path:
    """Write config.json, model.safetensors and tokenizer.json (and card.json) in the HF layout."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save(str(directory / TOKENIZER_FILE))
    if card is not None:
        (directory / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return directory
