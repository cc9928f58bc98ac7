"""Write a random-weight checkpoint in exactly the layout of the released `ridger/MMfreeLM-*` repositories.

No network: the tokenizer is trained here with `tokenizers` on Tiny Shakespeare (ASCII only, so CJK
and emoji go through byte fallback) and laid out as a Llama tokenizer.json is: `<unk>`, `<s>`, `</s>`
as ids 0-2, the 256 byte tokens `<0x00>`..`<0xFF>` as ids 3-258, then the BPE pieces; a "▁" space
marker with a prepended dummy prefix; a byte-fallback decoder; `<s>` added by the post-processor.
Beside it: tokenizer_config.json (add_bos_token true), special_tokens_map.json,
generation_config.json, a config.json with the key set the released files carry, the weights in
bf16 as `model.safetensors`, and a sharded copy (`model-0000x-of-00002.safetensors` with an index).

    python -m tests.make_released_fixture OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "sample_models" / "corpora" / "tinyshakespeare.txt"
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
SPACE = "\u2581"


def llama_style_tokenizer(text: str, vocab_size: int = 512) -> Tokenizer:
    """A byte-fallback BPE in the Llama tokenizer.json layout (see the module docstring)."""
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    # Pieces never span a space marker (sentencepiece's split_by_whitespace), as in Llama's vocabulary.
    trainer_tok.pre_tokenizer = pre_tokenizers.Split(SPACE, behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS], show_progress=False
    )
    trainer_tok.train_from_iterator(text.splitlines(), trainer=trainer)
    data = json.loads(trainer_tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    data["pre_tokenizer"] = None
    data["model"]["byte_fallback"] = True
    data["model"]["fuse_unk"] = True
    tokenizer = Tokenizer.from_str(json.dumps(data))
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tokenizer


def released_config(vocab_size: int, hidden_size: int = 64, layers: int = 2) -> dict:
    """config.json with the keys (and their order) of the released MMfreeLM repositories."""
    return {
        "_name_or_path": "ridger/MMfreeLM-370M",
        "architectures": ["HGRNBitForCausalLM"],
        "attn_mode": "fused_recurrent",
        "auto_map": {
            "AutoConfig": "configuration_hgrn_bit.HGRNBitConfig",
            "AutoModelForCausalLM": "modeling_hgrn_bit.HGRNBitForCausalLM",
        },
        "bos_token_id": 1,
        "conv_size": 4,
        "eos_token_id": 2,
        "expand_ratio": 1,
        "fuse_cross_entropy": True,
        "hidden_act": "swish",
        "hidden_ratio": 4,
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": None,
        "max_position_embeddings": 2048,
        "model_type": "hgrn_bit",
        "num_heads": 1,
        "num_hidden_layers": layers,
        "rms_norm_eps": 1e-06,
        "share_conv_kernel": True,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.2",
        "use_cache": True,
        "use_lower_bound": True,
        "use_short_conv": False,
        "vocab_size": vocab_size,
    }


def random_state_dict(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random bf16 weights under the released key names, with trained-like magnitudes.

    Small-magnitude o_proj / down_proj inputs are kept on purpose: they are where the BitLinear eps
    matters (the float logits move by percents between eps 1e-8 and 1e-6 there).
    """
    gen = torch.Generator().manual_seed(seed)
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    inner = 256 * ((int(hidden * config["hidden_ratio"] * 2 / 3) + 255) // 256)

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=gen) * std

    def gain(n):
        return 1 + 0.3 * torch.randn(n, generator=gen)

    sd: dict[str, torch.Tensor] = {"model.embeddings.weight": normal(vocab, hidden, std=0.5)}
    sd["model.lower_bounds"] = torch.randn(layers, hidden, generator=gen)
    for k in range(layers):
        p = f"model.layers.{k}."
        sd[p + "attn_norm.weight"] = gain(hidden)
        for name in ("i_proj", "f_proj", "g_proj"):
            sd[p + f"attn.{name}.weight"] = normal(hidden, hidden)
            sd[p + f"attn.{name}.norm.weight"] = gain(hidden)
        sd[p + "attn.g_norm.weight"] = gain(hidden) * 1e-3
        sd[p + "attn.o_proj.weight"] = normal(hidden, hidden)
        sd[p + "attn.o_proj.norm.weight"] = gain(hidden)
        sd[p + "mlp_norm.weight"] = gain(hidden)
        sd[p + "mlp.gate_proj.weight"] = normal(2 * inner, hidden)
        sd[p + "mlp.gate_proj.norm.weight"] = gain(hidden) * 1e-3
        sd[p + "mlp.down_proj.weight"] = normal(hidden, inner)
        sd[p + "mlp.down_proj.norm.weight"] = gain(inner)
    sd["model.norm.weight"] = gain(hidden)
    sd["lm_head.weight"] = normal(vocab, hidden)
    sd["lm_head.norm.weight"] = gain(hidden)
    return {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}


def write_released_checkpoint(out: Path, seed: int = 0, sharded: bool = False) -> Path:
    """The whole directory; `sharded` writes two shards and an index instead of one file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = llama_style_tokenizer(CORPUS.read_text(encoding="utf-8")[:300_000])
    tokenizer.save(str(out / "tokenizer.json"))
    config = released_config(tokenizer.get_vocab_size())
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    special = {
        "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "unk_token": {"content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    }
    tokenizer_config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": None,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    generation = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.40.2"}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    state = random_state_dict(config, seed)
    if not sharded:
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        return out
    keys = sorted(state)
    halves = (keys[: len(keys) // 2], keys[len(keys) // 2 :])
    weight_map = {}
    for n, part in enumerate(halves, start=1):
        name = f"model-{n:05d}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.make_released_fixture OUT_DIR")
    print(write_released_checkpoint(Path(sys.argv[1])))
