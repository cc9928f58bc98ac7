"""The HGRNBit model configuration, key for key as in the public MMfreeLM `config.json` files.

Why a strict parser: a researcher pointing the app at a downloaded checkpoint must learn at once
(and by name) about a key we do not understand, instead of getting a model that silently computes
something else. Keys that Hugging Face writes into every config and that do not change the
computation (`architectures`, `torch_dtype`, ...) are accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import CheckpointError

MODEL_TYPE = "hgrn_bit"

# Keys every Hugging Face `PretrainedConfig` may write; none of them changes what the model computes.
IGNORED_HF_KEYS = frozenset(
    {
        "architectures",
        "auto_map",
        "torch_dtype",
        "dtype",
        "transformers_version",
        "pad_token_id",
        "fuse_cross_entropy",
        "fuse_norm",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "use_return_dict",
        "_name_or_path",
        "is_decoder",
    }
)

SUPPORTED_ACTIVATIONS = ("swish", "silu")


@dataclass(frozen=True)
class HGRNBitConfig:
    """Hyper-parameters of a MatMul-free LM (HGRNBit). Defaults are those of the reference code."""

    vocab_size: int = 32000
    hidden_size: int = 2048
    num_hidden_layers: int = 24
    attn_mode: str = "fused_recurrent"
    num_heads: int = 1
    expand_ratio: int = 1
    use_short_conv: bool = False
    conv_size: int = 4
    share_conv_kernel: bool = True
    use_lower_bound: bool = True
    hidden_ratio: int = 4
    intermediate_size: int | None = None
    hidden_act: str = "swish"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    bos_token_id: int = 1
    eos_token_id: int = 2
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    model_type: str = field(default=MODEL_TYPE)

    @property
    def mlp_intermediate_size(self) -> int:
        """The GLU width: explicit, or the multiple of 256 nearest above 2/3 * hidden * ratio."""
        if self.intermediate_size is not None:
            return int(self.intermediate_size)
        raw = int(self.hidden_size * self.hidden_ratio * 2 / 3)
        return 256 * math.ceil(raw / 256)

    @property
    def mixer_size(self) -> int:
        """Width of the MLGRU state (hidden_size * expand_ratio)."""
        return int(self.hidden_size * self.expand_ratio)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["architectures"] = ["HGRNBitForCausalLM"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> "HGRNBitConfig":
        """Build a config, rejecting anything we would not compute faithfully."""
        if not isinstance(data, dict):
            raise CheckpointError(source, None, "the file must hold a JSON object")
        model_type = data.get("model_type")
        if model_type != MODEL_TYPE:
            raise CheckpointError(
                source,
                "model_type",
                f"unsupported model_type {model_type!r}; this app runs the MatMul-free LM family "
                f"(model_type {MODEL_TYPE!r}, e.g. MMfreeLM-370M/1.3B/2.7B)",
            )
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in IGNORED_HF_KEYS:
                continue
            if key not in known:
                raise CheckpointError(source, key, "unknown config key for an hgrn_bit model")
            kwargs[key] = value
        config = cls(**kwargs)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        """Reject values that the reference code would assert on or that we do not implement."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "hidden_ratio")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CheckpointError(source, key, f"must be a positive integer, got {value!r}")
        ratio = self.expand_ratio
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio <= 0:
            raise CheckpointError(
                source, "expand_ratio",
                f"must be a positive integer (the MLGRU is hidden_size * expand_ratio wide), got {ratio!r}"
            )
        if self.attn_mode != "fused_recurrent":
            raise CheckpointError(source, "attn_mode", f"only 'fused_recurrent' exists, got {self.attn_mode!r}")
        if self.use_short_conv:
            raise CheckpointError(
                source, "use_short_conv", "short convolutions are not supported (MMfreeLM checkpoints do not use them)"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(source, "hidden_act", f"only swish/silu is supported, got {self.hidden_act!r}")
        if self.mixer_size % self.num_heads:
            raise CheckpointError(source, "num_heads", "hidden_size * expand_ratio must be divisible by num_heads")
        if self.tie_word_embeddings:
            raise CheckpointError(
                source, "tie_word_embeddings", "tied embeddings are not part of the HGRNBit family (lm_head is a BitLinear)"
            )
        if not (isinstance(self.rms_norm_eps, (int, float)) and self.rms_norm_eps >= 0):
            raise CheckpointError(source, "rms_norm_eps", f"must be a non-negative number, got {self.rms_norm_eps!r}")
        if self.intermediate_size is not None and (
            not isinstance(self.intermediate_size, int) or self.intermediate_size <= 0
        ):
            raise CheckpointError(source, "intermediate_size", "must be null or a positive integer")


def read_config(path: Path) -> HGRNBitConfig:
    """Read and validate `config.json`, naming the file in every error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(str(path), None, "file not found (a checkpoint directory needs config.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(path), None, f"not valid JSON: {exc}") from None
    return HGRNBitConfig.from_dict(data, source=str(path))


# Published model sizes, for the core mapper and for benchmarks with random weights.
PUBLISHED_CONFIGS: dict[str, dict[str, Any]] = {
    "MMfreeLM-370M": {"hidden_size": 1024, "num_hidden_layers": 24, "vocab_size": 32000},
    "MMfreeLM-1.3B": {"hidden_size": 2048, "num_hidden_layers": 24, "vocab_size": 32000},
    "MMfreeLM-2.7B": {"hidden_size": 2560, "num_hidden_layers": 32, "vocab_size": 32000},
}
