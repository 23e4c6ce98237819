#!/usr/bin/env python3
"""Reference logits from transformers for a V2-Lite-shaped synth checkpoint (q_proj instead of
q-LoRA, greedy routing, routed_scaling_factor 1.0), which the tiny fixture does not cover.

    dsconv synth --like deepseek-v2-lite --layers 3 --hidden 64 --experts 8 --vocab 512 --seed 5 --out DIR
    python Scripts/make-lite-reference.py DIR > Tests/Fixtures/synth-lite/reference.json

Same recipe as the fixtures: bf16 weights upcast to fp32, eager attention, 2 threads."""
import json, sys
import torch
from transformers import DeepseekV2ForCausalLM
torch.set_num_threads(2)
d = sys.argv[1]
m = DeepseekV2ForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager").float().eval()
prompts = [[1, 5, 9, 200, 17, 3, 44, 120, 7, 300, 2], [511, 0, 42, 42, 42, 255, 17]]
cases = []
with torch.no_grad():
    for ids in prompts:
        logits = m(torch.tensor([ids])).logits[0, -1]
        cases.append({"input_ids": ids, "last_logits": [float(f"{v:.9g}") for v in logits.tolist()]})
print(json.dumps({"made_by": "Scripts/make-lite-reference.py", "torch": torch.__version__,
                  "transformers": __import__("transformers").__version__, "cases": cases}))
