#!/usr/bin/env python3
"""Compare `dsconv reshard --layout deepseek` with DeepSeek's own converter, tensor by tensor.

DeepSeek's distributed inference (the `inference/` folder of github.com/deepseek-ai/DeepSeek-V3,
whose configs/config_236B.json and config_16B.json describe V2.5 and V2-Lite) loads
`model{rank}-mp{N}.safetensors` files written by its `convert.py`. This script runs that
`convert.py` from a checkout you point it at (we do not ship their code, so this is not part of CI)
and `dsconv reshard SRC --tp N --layout deepseek` on the same checkpoint, then checks that every
rank file holds the same tensors: names, dtypes, shapes and bytes, and that the same tokenizer
files were copied. File bytes may differ (tensor order inside a file, header metadata); the tensors
may not.

    Scripts/check-deepseek-convert.py --deepseek-v3 ~/src/DeepSeek-V3 --model Tests/Fixtures/tiny-dsv2.5 --tp 2

Needs torch, safetensors and tqdm (the interop virtualenv of Scripts/interop has them):
    ~/.cache/dsconv/interop/bin/python Scripts/check-deepseek-convert.py ...
Exit status: 0 when every rank matches, 1 on any difference, 2 on bad arguments.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open


def load(path):
    with safe_open(path, framework="pt", device="cpu") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deepseek-v3", required=True, help="a checkout of github.com/deepseek-ai/DeepSeek-V3")
    ap.add_argument("--model", required=True, help="a Hugging Face DeepSeek-V2/V2.5 checkpoint directory (BF16)")
    ap.add_argument("--tp", type=int, action="append", help="model-parallel size (repeatable; default 1, 2, 4)")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--dsconv", default=os.path.join(here, "..", ".build", "release", "dsconv"))
    args = ap.parse_args()
    convert = os.path.join(args.deepseek_v3, "inference", "convert.py")
    if not os.path.isfile(convert):
        sys.exit(f"error: {convert} not found (--deepseek-v3 must be a checkout of DeepSeek-V3)")
    dsconv = args.dsconv if os.path.exists(args.dsconv) else os.path.join(here, "..", ".build", "debug", "dsconv")
    if not os.path.exists(dsconv):
        sys.exit("error: build dsconv first (swift build -c release)")
    config = json.load(open(os.path.join(args.model, "config.json")))
    experts = config.get("n_routed_experts") or 0
    index = json.load(open(os.path.join(args.model, "model.safetensors.index.json")))
    shards = sorted(set(index["weight_map"].values()))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="dsconv-ds-convert-") as tmp:
        # convert.py reads every *.safetensors of its input: give it the checkpoint's shards only
        # (a fixture directory also holds reference tensors), plus config and tokenizer files.
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        for name in os.listdir(args.model):
            if name in shards or not name.endswith(".safetensors"):
                os.symlink(os.path.abspath(os.path.join(args.model, name)), os.path.join(src, name))
        for tp in args.tp or [1, 2, 4]:
            theirs, ours = os.path.join(tmp, f"theirs-{tp}"), os.path.join(tmp, f"ours-{tp}")
            subprocess.run([sys.executable, convert, "--hf-ckpt-path", src, "--save-path", theirs,
                            "--n-experts", str(experts), "--model-parallel", str(tp)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run([dsconv, "reshard", src, "--tp", str(tp), "--layout", "deepseek", "--out", ours],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            problems = []
            for r in range(tp):
                name = f"model{r}-mp{tp}.safetensors"
                a, b = load(os.path.join(theirs, name)), load(os.path.join(ours, name))
                if set(a) != set(b):
                    problems.append(f"{name}: only in convert.py's {sorted(set(a) - set(b))[:5]}, only in ours {sorted(set(b) - set(a))[:5]}")
                for k in sorted(set(a) & set(b)):
                    if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
                        problems.append(f"{name}: {k}: {a[k].dtype} {tuple(a[k].shape)} vs ours {b[k].dtype} {tuple(b[k].shape)}")
                    elif not torch.equal(a[k].view(torch.uint8) if a[k].dim() else a[k], b[k].view(torch.uint8) if b[k].dim() else b[k]):
                        problems.append(f"{name}: {k}: bytes differ")
                print(f"tp {tp} rank {r}: {len(a)} tensors from convert.py, {len(b)} from dsconv")
            copied = sorted(n for n in os.listdir(theirs) if not n.endswith(".safetensors"))
            missing = [n for n in copied if not os.path.exists(os.path.join(ours, n))]
            if missing:
                problems.append(f"files convert.py copied that dsconv did not: {missing}")
            for p in problems:
                print("  DIFFERENT:", p)
            print(f"tp {tp}: {'OK, every tensor identical' if not problems else f'{len(problems)} difference(s)'}")
            failures += len(problems)
            shutil.rmtree(theirs, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
