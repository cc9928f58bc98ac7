"""Golden greedy outputs of the sample models, float and integer (llama2.c's golden-output tests).

The integer model is promised to give the same bits every time, so its greedy tokens and a digest
of every MLGRU state code are pinned; the float greedy tokens are pinned too. A change that moves
them must be deliberate: regenerate with

    python -m tests.golden        (writes tests/golden_outputs.json)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from inspector.backends.emulator import Emulator
from inspector.lm.catalog import sample_models
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings, generate
from inspector.quant.config import QuantConfig

GOLDEN_FILE = Path(__file__).with_name("golden_outputs.json")
PROMPTS = {"shakespeare": "ROMEO:\n", "tinystories": "Once upon a time, "}
TOKENS = 24


def compute_golden(name: str, qc: QuantConfig | None = None) -> dict:
    """`qc`: None pins the default QuantConfig; another one must give the same bits where it is
    promised to (e.g. sigma-delta messaging at vth = 0)."""
    loaded = load_checkpoint(sample_models()[name])
    prompt = PROMPTS[name]
    settings = SamplingSettings(max_new_tokens=TOKENS, temperature=0.0)
    float_steps = list(generate(loaded.model, loaded.tokenizer, prompt, **vars(settings)))
    emulator = Emulator(loaded, qc)
    run, stream = emulator.generate(prompt, settings, probes=True)
    list(stream)
    states = run.probe.states().sort(["token", "layer", "neuron"])
    digest = hashlib.sha256(states["code"].to_numpy().tobytes()).hexdigest()
    return {
        "prompt": prompt,
        "float_ids": [s.token_id for s in float_steps],
        "float_text": "".join(s.text for s in float_steps),
        "integer_ids": [t.token_id for t in run.tokens],
        "integer_text": "".join(t.text for t in run.tokens),
        "integer_state_codes_sha256": digest,
    }


if __name__ == "__main__":
    golden = {name: compute_golden(name) for name in PROMPTS}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(golden, indent=2, ensure_ascii=False))
