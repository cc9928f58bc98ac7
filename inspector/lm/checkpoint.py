"""Reading and writing checkpoints in the Hugging Face layout of the MMfreeLM releases.

A checkpoint directory holds `config.json`, the weights (`model.safetensors`, or shards listed in
`model.safetensors.index.json`, or a `pytorch_model.bin` read with `torch.load(weights_only=True)`)
and `tokenizer.json` (or a sentencepiece `tokenizer.model`, converted on load), with the BOS policy of
its `tokenizer_config.json` (see `inspector.lm.tokenizer`). Nothing is unpickled and nothing is fetched
from the network. Every problem is raised as a `CheckpointError` that names the file and the tensor
key, because "size mismatch" alone does not tell a researcher which of 300 tensors came from the wrong model.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer

from inspector.errors import CheckpointError
from inspector.lm.config import HGRNBitConfig, read_config_and_ignored
from inspector.lm.memory import check_model_fits
from inspector.lm.model import BitLinear, HGRNBitForCausalLM
from inspector.lm.paths import checkpoint_directory
from inspector.lm.ternary import NonFiniteWeightError, TernaryMatrix
from inspector.lm.tokenizer import TOKENIZER_FILE, load_tokenizer
from inspector.lm.weight_digest import WeightDigest

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
CARD_FILE = "card.json"
GENERATION_CONFIG_FILE = "generation_config.json"


@dataclass
class LoadedModel:
    """A model ready to run: float weights, its tokenizer, config and (for sample models) card."""

    model: HGRNBitForCausalLM
    tokenizer: Tokenizer
    config: HGRNBitConfig
    directory: Path
    card: dict[str, Any] | None = None
    generation_eos: tuple[int, ...] | None = None  # eos_token_id of generation_config.json, when it names one
    ignored_config_keys: tuple[str, ...] = ()  # Hugging Face bookkeeping keys of config.json, accepted and ignored
    weights_digest: WeightDigest | None = None  # SHA-256 of the weight files (keys the calibration cache)

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """The ids that end generation, as Hugging Face's `generate` reads them: generation_config.json's
        `eos_token_id` (one id or a list), else config.json's."""
        if self.generation_eos is not None:
            return self.generation_eos
        eos = self.config.eos_token_id
        return tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))


def ignored_keys_note(keys: tuple[str, ...]) -> str:
    """The line the CLI prints and the caption the app shows for config.json keys accepted and ignored."""
    return (
        f"config.json keys ignored ({len(keys)}; Hugging Face bookkeeping that the released code does not read either): "
        + ", ".join(keys)
    )


class WeightSource:
    """The tensors of a checkpoint, by key, read one at a time (never a second full copy in memory).

    Shapes and dtypes come from the file headers (safetensors) or a memory map (`.bin`), so they are
    checked against the config before any tensor is read or any model memory is allocated.
    """

    def __init__(self, files: dict[str, Path], readers: dict[Path, Any], index: Path | None = None):
        self.files = files  # key -> file that holds it
        self._readers = readers
        self.index = index  # model.safetensors.index.json of a sharded checkpoint
        self._read: dict[Path, int] = {}  # bytes read through each file's current mapping

    def where(self) -> str:
        """The file a tensor that is not there should have been found through: the index, or the one weights file."""
        if self.index is not None:
            return str(self.index)
        return str(next(iter(self.files.values()), next(iter(self._readers), "")))

    def keys(self) -> list[str]:
        return list(self.files)

    def close(self) -> None:
        """Drop the readers (and with them the memory maps of the weight files)."""
        for reader in self._readers.values():
            if hasattr(reader, "__exit__"):
                reader.__exit__(None, None, None)
        self._readers.clear()

    def shape(self, key: str) -> tuple[int, ...]:
        reader = self._readers[self.files[key]]
        return tuple(reader[key].shape) if isinstance(reader, dict) else tuple(reader.get_slice(key).get_shape())

    def dtype(self, key: str) -> str:
        reader = self._readers[self.files[key]]
        if isinstance(reader, dict):
            return str(reader[key].dtype).replace("torch.", "")
        return str(reader.get_slice(key).get_dtype())

    REMAP_BYTES = 128 * 2**20  # a safetensors file is mapped afresh after this much was read from it (see `get`)

    def get(self, key: str) -> torch.Tensor:
        """One tensor, copied out of the file. Pages of a memory-mapped file count in the resident size for as long
        as the mapping lives, so a safetensors file is mapped afresh every REMAP_BYTES: a 740 MB checkpoint then
        adds about that much, not its whole size, to the loading peak."""
        path = self.files[key]
        reader = self._readers[path]
        try:
            if isinstance(reader, dict):
                return reader[key]
            tensor = reader.get_tensor(key)
            self._read[path] = self._read.get(path, 0) + tensor.numel() * tensor.element_size()
            if self._read[path] >= self.REMAP_BYTES:
                self._read[path] = 0
                self._readers[path] = _open_safetensors(path)
            return tensor
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(str(path), key, f"cannot be read ({exc})") from None


def _open_safetensors(path: Path):
    try:
        return safe_open(str(path), framework="pt")
    except FileNotFoundError:
        raise CheckpointError(str(path), None, "file not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(str(path), None, f"not a valid safetensors file ({exc})") from None


def _safetensors_source(path: Path) -> WeightSource:
    reader = _open_safetensors(path)
    return WeightSource({key: path for key in reader.keys()}, {path: reader})


def _sharded_source(index_path: Path) -> WeightSource:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map: dict[str, str] = index["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(index_path), None, f"not valid JSON: {exc}") from None
    except (KeyError, TypeError):
        raise CheckpointError(str(index_path), "weight_map", "missing or not an object") from None
    readers: dict[Path, Any] = {}
    files: dict[str, Path] = {}
    for key, shard in weight_map.items():
        shard_path = index_path.parent / str(shard)
        if shard_path.resolve().parent != index_path.parent.resolve():
            raise CheckpointError(str(index_path), key, f"shard {shard!r} is outside the checkpoint directory")
        if shard_path not in readers:
            if not shard_path.exists():
                raise CheckpointError(str(shard_path), None, f"shard listed in {INDEX_FILE} is missing")
            readers[shard_path] = _open_safetensors(shard_path)
        if key not in readers[shard_path].keys():
            raise CheckpointError(
                str(shard_path), key, f"missing tensor: {index_path} lists it in this shard ({shard}), which does not hold it",
            )
        files[key] = shard_path
    return WeightSource(files, readers, index=index_path)


def _torch_bin_source(path: Path) -> WeightSource:
    try:
        try:  # memory-mapped: tensors are paged in as they are read
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
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
    return WeightSource({key: path for key in state}, {path: state})


def weight_source(directory: Path) -> WeightSource:
    """Find the weight files of a checkpoint directory (single safetensors, sharded, or .bin)."""
    for name, opener in ((WEIGHTS_FILE, _safetensors_source), (INDEX_FILE, _sharded_source), (TORCH_FILE, _torch_bin_source)):
        path = directory / name
        if path.exists():
            return opener(path)
    raise CheckpointError(
        str(directory / WEIGHTS_FILE), None, f"no weights found (looked for {WEIGHTS_FILE}, {INDEX_FILE}, {TORCH_FILE})"
    )


def expected_shapes(model: HGRNBitForCausalLM) -> dict[str, tuple[int, ...]]:
    """Every tensor key a checkpoint of this config must hold, with its shape (BitLinear weights included)."""
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for name, module in model.bitlinears():
        shapes[f"{name}.weight"] = (module.out_features, module.in_features)
    return shapes


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "float64", "float32", "float16", "bfloat16")


LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.")


def weight_layers(keys: list[str]) -> int | None:
    """Layers the weights hold, when their `model.layers.N.` indices are 0..M-1 without a gap; None when they are
    not (a stray tensor of some layer is an unexpected tensor, not a different layer count)."""
    found = {int(m.group(1)) for m in map(LAYER_KEY.match, keys) if m}
    return len(found) if found == set(range(len(found))) else None


def check_weight_source(shapes: dict[str, tuple[int, ...]], source: WeightSource, config_file: str | None = None) -> None:
    """Compare names, shapes and dtypes against the config from the headers alone, naming the first offending key.

    A different number of layers is said as such first (`config_file` is named with it): otherwise the first
    symptom would be a missing or unexpected tensor of some layer, which hides the cause.
    """
    expected, held = weight_layers(list(shapes)), weight_layers(source.keys())
    if config_file is not None and held is not None and expected != held:
        raise CheckpointError(
            config_file, "num_hidden_layers",
            f"config: {expected} layers, weights: {held} (in {source.where()}); "
            "the config and the weights are of different models",
        )
    for key, shape in shapes.items():
        if key not in source.files:
            where = source.where()
            if source.index is not None:
                raise CheckpointError(where, key, f"missing tensor: {INDEX_FILE} does not list it in any shard")
            raise CheckpointError(where, key, "missing tensor")
        got = source.shape(key)
        if got != shape:
            raise CheckpointError(str(source.files[key]), key, f"shape {got} does not match the config's {shape}")
        if source.dtype(key) not in FLOAT_DTYPES:
            raise CheckpointError(str(source.files[key]), key, f"dtype {source.dtype(key)} is not a floating-point type")
    unexpected = sorted(set(source.files) - set(shapes))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(str(source.files[unexpected[0]]), unexpected[0], f"unexpected tensor for this config{more}")


@dataclass(frozen=True)
class CheckpointTensor:
    """One tensor of a checkpoint directory, read again when called (picklable, unlike a closure): the
    Learn tour's latent-weight histogram is counted from it only when a page asks (`TernaryMatrix`)."""

    directory: Path
    key: str

    def __call__(self) -> torch.Tensor:
        source = weight_source(self.directory)
        try:
            return source.get(self.key)
        finally:
            source.close()


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite, as `torch.isfinite(tensor).all()`: from the smallest and largest value
    (`aminmax` keeps a NaN; an infinity is one of them), one reduction without a bool copy, several times
    faster on a bf16 embedding table."""
    if tensor.numel() == 0:
        return True
    lowest, highest = torch.aminmax(tensor)
    return math.isfinite(lowest) and math.isfinite(highest)


def _place(
    model: HGRNBitForCausalLM, key: str, tensor: torch.Tensor, bitlinears: dict[str, BitLinear], source: WeightSource,
    directory: Path,
) -> None:
    """Put one checkpoint tensor into the model: a BitLinear weight as its int8 ternary matrix, the rest as float32.

    Every tensor is checked for NaN and infinities; a BitLinear weight by `ternarize` itself, whose float64
    sum of |w| is finite exactly when every weight is (one pass over the weights fewer)."""
    owner, _, name = key.rpartition(".")
    if name == "weight" and owner in bitlinears:
        try:
            matrix = TernaryMatrix.from_weight(tensor, reread=CheckpointTensor(directory, key))
        except NonFiniteWeightError as exc:
            raise CheckpointError(str(source.files[key]), key, str(exc)) from None
        bitlinears[owner].freeze(matrix)
        return
    if not _all_finite(tensor):
        raise CheckpointError(str(source.files[key]), key, "contains NaN or infinite values")
    module = model.get_submodule(owner) if owner else model
    setattr(module, name, torch.nn.Parameter(tensor.to(torch.float32), requires_grad=False))


def read_generation_eos(path: Path, vocab_size: int) -> tuple[int, ...] | None:
    """`eos_token_id` of generation_config.json (one id or a list, as Hugging Face writes it), or None
    when the file or the key is absent (config.json's then applies). Anything else is refused by name."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(path), None, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(str(path), None, "the file must hold a JSON object")
    eos = data.get("eos_token_id")
    if eos is None:
        return None
    ids = eos if isinstance(eos, list) else [eos]
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids):
        raise CheckpointError(
            str(path), "eos_token_id", f"must be a token id below vocab_size {vocab_size} or a list of them, got {eos!r}",
        )
    return tuple(ids)


ProgressFn = Callable[[int, int, str], None]  # (tensors done, tensors total, key)


def load_checkpoint(directory: str | Path, on_progress: Optional[ProgressFn] = None) -> LoadedModel:
    """Load a model (frozen: int8 ternary matrices, see BitLinear) and its tokenizer from a local HF-layout directory.

    Order matters for a hostile or mistaken input: the path (`inspector.lm.paths`), the config, then every tensor's
    name, shape and dtype from the file headers, then the memory the config implies, and only then any tensor data, one tensor at
    a time (bf16 or float32 on disk, never two full copies in memory).
    """
    directory = checkpoint_directory(directory)  # validated, and within INSPECTOR_MODEL_ROOTS if set
    config, ignored_keys = read_config_and_ignored(directory / CONFIG_FILE)
    source = weight_source(directory)
    with torch.device("meta"):  # no memory: shapes only
        model = HGRNBitForCausalLM(config, initialize=False)
    shapes = expected_shapes(model)
    check_weight_source(shapes, source, str(directory / CONFIG_FILE))  # a config that does not match its weights is named first
    check_model_fits(config, str(directory / CONFIG_FILE))
    digest = WeightDigest(list(source.files.values()))  # hashed in a background thread while the tensors load
    bitlinears = dict(model.bitlinears())
    keys = list(shapes)
    for done, key in enumerate(keys):
        tensor = source.get(key)
        _place(model, key, tensor, bitlinears, source, directory)
        del tensor
        if on_progress is not None:
            on_progress(done + 1, len(keys), key)
    model.freeze()
    source.close()  # unmap the weight files now: their pages would otherwise count in the resident size until a collection
    tokenizer = load_tokenizer(directory, config.bos_token_id, config.eos_token_id)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            str(directory / TOKENIZER_FILE),
            None,
            f"tokenizer has {tokenizer.get_vocab_size()} tokens but config vocab_size is {config.vocab_size}",
        )
    generation_eos = read_generation_eos(directory / GENERATION_CONFIG_FILE, config.vocab_size)
    card = None
    card_path = directory / CARD_FILE
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(str(card_path), None, f"not valid JSON: {exc}") from None
    return LoadedModel(
        model=model, tokenizer=tokenizer, config=config, directory=directory, card=card, generation_eos=generation_eos,
        ignored_config_keys=ignored_keys, weights_digest=digest,
    )


def save_checkpoint(
    model: HGRNBitForCausalLM, tokenizer: Tokenizer, directory: str | Path, card: dict[str, Any] | None = None
) -> Path:
    """Write config.json, model.safetensors and tokenizer.json (and card.json) in the HF layout.

    Only a trainable model (with its latent float weights) can be saved: a frozen one has dropped them.
    """
    if any(module.frozen for _, module in model.bitlinears()):
        raise ValueError("a frozen model keeps only ternary weights; save the trainable model instead")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save(str(directory / TOKENIZER_FILE))
    if card is not None:
        (directory / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return directory
