#!/usr/bin/env python3
"""Greedy reference continuations from Hugging Face transformers, made the way the fixtures'
README describes (native DeepseekV2ForCausalLM, bf16 weights upcast to fp32, eager attention,
CPU, 2 threads, greedy with use_cache, EOS not stopping). Usage:

    python Scripts/make-prompt-reference.py MODEL_DIR "Who are you?" [MORE PROMPTS...] > out.json

Needs torch and transformers (pip install torch transformers); the tests do not.
The first check reproduces the fixture's prompt 0, so a mismatch in setup shows at once."""
import json, sys
import torch
from transformers import AutoTokenizer, DeepseekV2ForCausalLM

torch.set_num_threads(2)
model_dir, prompts = sys.argv[1], sys.argv[2:]
tok = AutoTokenizer.from_pretrained(model_dir)
model = DeepseekV2ForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager").float().eval()

def greedy(ids, n=16):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n,
                             eos_token_id=None, use_cache=True)
    return out[0, len(ids):].tolist()

def chat_ids(text):
    # The template writes BOS itself: tokenize its text without adding special tokens.
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    return tok(rendered, add_special_tokens=False)["input_ids"]

ref = json.load(open(f"{model_dir}/reference.json"))
p0 = ref["prompts"][0]
assert greedy(p0["input_ids"]) == p0["greedy"]["new_ids"], "setup does not reproduce the fixture's prompt 0"
cases = []
for text in prompts:
    ids = chat_ids(text)
    new = greedy(ids)
    cases.append({"prompt": text, "input_ids": ids, "new_ids": new, "text": tok.decode(new)})
print(json.dumps({"made_by": "Scripts/make-prompt-reference.py", "torch": torch.__version__,
                  "transformers": __import__("transformers").__version__, "cases": cases}, ensure_ascii=False, indent=1))
