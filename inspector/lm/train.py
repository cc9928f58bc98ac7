"""Train a small MatMul-free LM on a text corpus, on the CPU, and save it in the HF layout.

    python -m inspector.lm.train --corpus sample_models/corpora/tinyshakespeare.txt \
        --out sample_models/shakespeare --steps 3000

The last `--val-fraction` of the corpus (cut at a line break) is held out; the tokenizer is trained
on the rest. The saved `card.json` records the parameters, tokens seen, wall time, the validation
loss in bits per character (tokenizer-independent, so models with different vocabularies compare)
and the exact command that reproduces the model.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from inspector.lm.catalog import split_corpus
from inspector.lm.checkpoint import save_checkpoint
from inspector.lm.config import HGRNBitConfig
from inspector.lm.generate import RecurrentLM
from inspector.lm.model import HGRNBitForCausalLM
from inspector.lm.tokenizer import encode, train_bpe_tokenizer


@torch.no_grad()
def bits_per_character(model: RecurrentLM, ids: torch.Tensor, num_chars: int, chunk: int = 256) -> float:
    """Total next-token NLL of the stream, in bits, divided by its characters (state carried across chunks)."""
    state = None
    total_nats = 0.0
    for start in range(0, ids.numel() - 1, chunk):
        window = ids[start : start + chunk + 1]
        if window.numel() < 2:
            break
        logits, state = model(window[:-1].unsqueeze(0), state)
        total_nats += F.cross_entropy(logits[0], window[1:], reduction="sum").item()
    return total_nats / math.log(2) / max(num_chars, 1)


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspector.lm.train", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = args.corpus.read_text(encoding="utf-8")
    train_text, val_text = split_corpus(text, args.val_fraction)
    tokenizer = train_bpe_tokenizer(train_text, args.vocab_size)
    train_ids = torch.tensor(encode(tokenizer, train_text), dtype=torch.long)
    val_ids = torch.tensor(encode(tokenizer, val_text), dtype=torch.long)

    config = HGRNBitConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        max_position_embeddings=args.seq_len,
    )
    model = HGRNBitForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sampler = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    progress = tqdm(range(args.steps), desc=f"train {args.out.name}", unit="step")
    for step in progress:
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.lr, args.warmup)
        starts = torch.randint(0, train_ids.numel() - args.seq_len - 1, (args.batch_size,), generator=sampler)
        batch = torch.stack([train_ids[s : s + args.seq_len + 1] for s in starts.tolist()])
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 20 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - started

    model.eval()
    val_bpc = bits_per_character(model, val_ids, len(val_text))
    train_sample = train_ids[: min(train_ids.numel(), val_ids.numel())]
    train_bpc = bits_per_character(model, train_sample, len(tokenizer.decode(train_sample.tolist())))
    command = "python -m inspector.lm.train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    card = {
        "name": args.out.name,
        "corpus": args.corpus.name,
        "parameters": model.num_parameters(),
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.mlp_intermediate_size,
        "vocab_size": config.vocab_size,
        "tokenizer": "byte-level BPE trained on the training split",
        "train_characters": len(train_text),
        "val_characters": len(val_text),
        "tokens_seen": args.steps * args.batch_size * args.seq_len,
        "steps": args.steps,
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "val_bits_per_char": round(val_bpc, 4),
        "train_bits_per_char_sample": round(train_bpc, 4),
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "command": command,
    }
    save_checkpoint(model, tokenizer, args.out, card)
    print(f"saved {args.out}: val {val_bpc:.4f} bits/char after {train_seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
