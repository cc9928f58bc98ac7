"""Reading and writing checkpoints in the Hugging Face layout of the MMfreeLM releases.

A checkpoint directory holds `config.json`, the weights (`model.safetensors`, or shards listed in
`model.safetensors.index.json`, or a `pytorch_model.bin` read with `torch.load(weights_only=True)`)
and `tokenizer.json` (or a sentencepiece `tokenizer.model`, converted on load), with the BOS policy of
its `tokenizer_config.json` (see `inspector.tokenizer`). Nothing is unpickled and nothing is fetched from the network. Every problem is
raised as a `CheckpointError` that names the file and the tensor key, because "size mismatch" alone
does not tell a researcher which of 300 tensors came from the wrong model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from inspector.config import HGRNBitConfig, read_config
from inspector.errors import CheckpointError
from inspector.model import HGRNBitForCausalLM
from inspector.tokenizer import TOKENIZER_FILE, load_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
CARD_FILE = "card.json"


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
    except Exception as exc:  # weights_only refuses pickled code with a generic UnpicklingError
        raise CheckpointError(str(path), None, f"cannot be read safely with weights_only=True ({exc})") from None
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
    """Load a float model and its tokenizer from a local directory in the HF layout."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise CheckpointError(str(directory), None, "not a directory")
    config = read_config(directory / CONFIG_FILE)
    tensors, source = read_weights(directory)
    model = HGRNBitForCausalLM(config)
    check_state_dict(model, tensors, source)
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    model.eval()
    tokenizer = load_tokenizer(directory, config.bos_token_id, config.eos_token_id)
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
