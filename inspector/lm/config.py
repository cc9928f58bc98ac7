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

# Keys every Hugging Face `PretrainedConfig` may write (the common attributes of transformers'
# `PretrainedConfig.__init__` and what `save_pretrained` adds, across 4.x and 5.x), plus the two fused-kernel
# switches of the released configs. Upstream's `HGRNBitConfig` passes them to `PretrainedConfig` and its
# model never reads them: none changes what the model computes. (Generation defaults such as
# `temperature` or `max_length` do not steer generation here: the app's and CLI's settings do.)
IGNORED_HF_KEYS = frozenset(
    {
        # what save_pretrained and the Hub write
        "architectures", "auto_map", "torch_dtype", "dtype", "transformers_version", "_name_or_path", "_commit_hash",
        "_attn_implementation_autoset", "_attn_implementation_internal", "attn_implementation", "_from_model_config",
        "use_bfloat16", "tokenizer_class", "model_type_version",
        # outputs and training switches
        "output_attentions", "output_hidden_states", "return_dict", "use_return_dict", "torchscript", "tf_legacy_loss",
        "pruned_heads", "chunk_size_feed_forward", "gradient_checkpointing", "output_past",
        # encoder-decoder and task heads (unused by a decoder-only LM)
        "is_decoder", "is_encoder_decoder", "add_cross_attention", "cross_attention_hidden_size", "tie_encoder_decoder",
        "decoder_start_token_id", "finetuning_task", "id2label", "label2id", "num_labels", "problem_type", "prefix",
        "task_specific_params", "sep_token_id", "pad_token_id",
        # legacy generation defaults
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
        "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
        "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
        "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
        # the released configs' fused-kernel switches (the same arithmetic, a different GPU kernel)
        "fuse_cross_entropy", "fuse_norm",
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
                raise CheckpointError(
                    source, key, "unknown config key for an hgrn_bit model (not one of its settings, nor a Hugging Face "
                    "bookkeeping key that the released code ignores)",
                )
            kwargs[key] = value
        config = cls(**kwargs)
        config.validate(source)
        return config

    @staticmethod
    def ignored_keys(data: dict[str, Any]) -> tuple[str, ...]:
        """The keys of a config.json that `from_dict` accepts and ignores (listed by the CLI and the app).
        `architectures` naming the one class of this family, as every hgrn_bit config does, says nothing new."""
        return tuple(sorted(
            key for key in data
            if key in IGNORED_HF_KEYS and not (key == "architectures" and data[key] == ["HGRNBitForCausalLM"])
        ))

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
        if self.use_lower_bound and ratio != 1:
            # Upstream adds the lower bound (hidden_size wide, one row per layer of model.lower_bounds) to the forget
            # gate (hidden_size * expand_ratio wide): the shapes do not broadcast and its forward pass fails.
            raise CheckpointError(
                source, "expand_ratio",
                f"expand_ratio {ratio} with use_lower_bound true cannot run: the lower bounds are hidden_size "
                f"({self.hidden_size}) wide and the forget gate hidden_size * expand_ratio ({self.mixer_size}); the released "
                "code fails on this combination too. Use expand_ratio 1 or use_lower_bound false.",
            )
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
    return read_config_and_ignored(path)[0]


def read_config_and_ignored(path: Path) -> tuple[HGRNBitConfig, tuple[str, ...]]:
    """`read_config`, and the Hugging Face bookkeeping keys it ignored (for the CLI and the app to list)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(str(path), None, "file not found (a checkpoint directory needs config.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(path), None, f"not valid JSON: {exc}") from None
    config = HGRNBitConfig.from_dict(data, source=str(path))
    return config, HGRNBitConfig.ignored_keys(data)


# Published model sizes, for the core mapper and for benchmarks with random weights.
PUBLISHED_CONFIGS: dict[str, dict[str, Any]] = {
    "MMfreeLM-370M": {"hidden_size": 1024, "num_hidden_layers": 24, "vocab_size": 32000},
    "MMfreeLM-1.3B": {"hidden_size": 2048, "num_hidden_layers": 24, "vocab_size": 32000},
    "MMfreeLM-2.7B": {"hidden_size": 2560, "num_hidden_layers": 32, "vocab_size": 32000},
}
