#!/usr/bin/env python3
"""GPU check: the engines' own GPU paths over dsconv outputs, compared with dsconv's CPU logits.

Prepared here, run on a machine with one NVIDIA GPU, PyTorch and transformers but no network
(and no Swift): everything it needs travels in one directory.

    Scripts/gpu-check.py prepare DIR --deepseek-v3 PATH   # here: dsconv outputs, reference logits, wheels
    python3 Scripts/gpu-check.py run DIR [--device cuda]   # on the GPU machine (cpu works too, to try it)

`prepare` writes into DIR (an ignored path such as .gpu-check/, carried to the GPU machine; about 58 MB):
  * int4/: `dsconv quantize` of the tiny V2.5-structured fixture (int4 g32 symmetric, RTN), and
    int4.logits.safetensors: `dsconv verify int4 --prompt-ids … --logits-out`;
  * ds-mp1/: `dsconv reshard` of the tiny V2.5-structured fixture, `--tp 1 --layout deepseek`
    (with generate-config.json), and ds.logits.safetensors from the source;
  * inference/: DeepSeek-V3's inference/ folder (from --deepseek-v3; never committed);
  * wheels/: compressed-tensors and what it needs that the GPU machine may lack (pip download).
`run` installs the wheels with `pip install --no-index` when compressed-tensors is missing, then:
  1. transformers on the GPU over int4/ (quantization_config decompressed to BF16, computed in fp32,
     TF32 off): last-position logits vs dsconv's, relative L2 <= 1e-3;
  2. DeepSeek's generate.py path at world size 1 (model.py's Transformer with
     ModelArgs(**generate-config.json), load_model of model0-mp1.safetensors, fp32, forward) over
     ds-mp1/: relative L2 <= 1e-3.
Prints one line per check and "N passed, N failed"; exit 1 on any failure, 2 when DIR is incomplete.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = [100000, 5726, 418, 340, 30, 185, 1217, 1098, 254, 10967, 13, 9849]
LIMIT = 1e-3


def prepare(args):
    dsconv = args.dsconv
    out = os.path.abspath(args.dir)
    os.makedirs(out, exist_ok=True)
    tiny = os.path.join(ROOT, "Tests/Fixtures/tiny-dsv2.5")

    def run(*a):
        r = subprocess.run([dsconv, *a], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"dsconv {' '.join(a)} failed ({r.returncode}):\n{r.stderr}")

    ids = ",".join(map(str, IDS))
    run("quantize", tiny, "--bits", "4", "--group-size", "32", "--out", os.path.join(out, "int4"), "--force")
    run("verify", os.path.join(out, "int4"), "--prompt-ids", ids, "--max-new-tokens", "1",
        "--logits-out", os.path.join(out, "int4.logits.safetensors"), "--force")
    run("reshard", tiny, "--tp", "1", "--experts", "ep", "--layout", "deepseek", "--out", os.path.join(out, "ds-mp1"), "--force")
    run("verify", tiny, "--prompt-ids", ids, "--max-new-tokens", "1",
        "--logits-out", os.path.join(out, "ds.logits.safetensors"), "--force")
    json.dump({"ids": IDS}, open(os.path.join(out, "ids.json"), "w"))
    src = args.deepseek_v3
    if not src or not os.path.exists(os.path.join(src, "inference", "model.py")):
        sys.exit("prepare: --deepseek-v3 must name a directory holding DeepSeek-V3's inference/ (model.py)")
    subprocess.run(["rm", "-rf", os.path.join(out, "inference")], check=True)
    subprocess.run(["cp", "-r", os.path.join(src, "inference"), os.path.join(out, "inference")], check=True)
    wheels = os.path.join(out, "wheels")
    os.makedirs(wheels, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", wheels,
                    "compressed-tensors==0.20.1", "loguru", "frozendict"], check=True)
    print(f"prepared {out}")
    return 0


def rel_l2(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def check_transformers(d, device):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig
    ours = load_file(os.path.join(d, "int4.logits.safetensors"))["logits"]
    model = AutoModelForCausalLM.from_pretrained(os.path.join(d, "int4"), dtype=torch.bfloat16, attn_implementation="eager",
                                                 quantization_config=CompressedTensorsConfig(run_compressed=False))
    model = model.float().to(device).eval()
    with torch.no_grad():
        theirs = model(torch.tensor([IDS], device=device)).logits[0, -1].cpu()
    return rel_l2(theirs, ours)


def check_deepseek(d, device):
    import torch
    from safetensors.torch import load_file, load_model
    sys.path.insert(0, os.path.join(d, "inference"))
    try:
        import model as model_py  # DeepSeek's inference/model.py (kernel.py imports triton)
    except ImportError as e:
        if "kernel" not in str(e) and "triton" not in str(e):
            raise
        import types
        stub = types.ModuleType("kernel")
        for n in ("act_quant", "weight_dequant", "fp8_gemm"):
            setattr(stub, n, lambda *a, **k: (_ for _ in ()).throw(RuntimeError("fp8 kernel called")))
        sys.modules["kernel"] = stub
        import model as model_py
    ckpt = os.path.join(d, "ds-mp1")
    args = model_py.ModelArgs(**json.load(open(os.path.join(ckpt, "generate-config.json"))))
    torch.set_default_device(device)
    model = model_py.Transformer(args)
    load_model(model, os.path.join(ckpt, "model0-mp1.safetensors"))
    model = model.float()
    with torch.no_grad():
        theirs = model.forward(torch.tensor([IDS], device=device), 0)[0].cpu()
    torch.set_default_device("cpu")
    ours = load_file(os.path.join(d, "ds.logits.safetensors"))["logits"]
    return rel_l2(theirs, ours)


def run_checks(args):
    d = os.path.abspath(args.dir)
    needed = ["int4/config.json", "int4.logits.safetensors", "ds-mp1/generate-config.json", "ds.logits.safetensors", "inference/model.py"]
    missing = [n for n in needed if not os.path.exists(os.path.join(d, n))]
    if missing:
        print(f"gpu-check: {d} lacks {', '.join(missing)} (run `Scripts/gpu-check.py prepare` first)")
        return 2
    try:
        import compressed_tensors  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        *glob.glob(os.path.join(d, "wheels", "*.whl"))], check=True)
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = args.device
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    print(f"device {name}, torch {torch.__version__}")
    passed = failed = 0
    for what, fn in [("transformers, int4 g32 (compressed-tensors)", check_transformers),
                     ("DeepSeek generate.py path, world size 1, generate-config.json", check_deepseek)]:
        t = time.time()
        try:
            r = fn(d, device)
            ok = r <= LIMIT
            print(f"{'PASS' if ok else 'FAIL'} {what} on {device}: logits relative L2 vs dsconv {r:.3g} (limit {LIMIT:g}), {time.time() - t:.1f} s")
        except Exception as e:  # noqa: BLE001 - a failure to load or run is the check's answer
            ok = False
            print(f"FAIL {what} on {device}: {type(e).__name__}: {' '.join(str(e).split())[:400]}")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dir")
    p.add_argument("--deepseek-v3", default=os.environ.get("DSCONV_DEEPSEEK_V3"))
    p.add_argument("--dsconv", default=os.path.join(ROOT, ".build/debug/dsconv"))
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--device", default="cuda")
    args = ap.parse_args()
    return prepare(args) if args.cmd == "prepare" else run_checks(args)


if __name__ == "__main__":
    sys.exit(main())
