#!/usr/bin/env python3
"""Interop check against the real peers (not a re-implementation):

1. dsconv's quantized outputs (int8 per channel RTN, int4 g32 symmetric GPTQ, int4 g32 asymmetric
   RTN, int4 g128 with the group fallback) are decompressed module by module with the
   compressed-tensors package's own PackedQuantizationCompressor.decompress, and every weight is
   compared bit for bit with `dsconv dequantize` of the same output.
2. The calibration statistics file opens in h5py with the documented attributes and datasets.
3. transformers loads the int4 GPTQ output (AutoModelForCausalLM, the checkpoint's
   quantization_config, decompressed to BF16 by compressed-tensors, computed in f32); its logits on
   a chat prompt match `dsconv verify --logits-out` on the same output (relative L2 <= 1e-4).
4. transformers on the asymmetric int4 output: whether it loads must be what `dsconv inspect
   --json` says of it (serving.transformers.loads); transformers 5.24 refuses it ("Asymmetric
   quant requires zero-point values": its fused-expert conversion drops the zero points).

Usage: Scripts/interop-check.py DSCONV_BINARY WORK_DIR   (needs torch, transformers,
compressed-tensors, safetensors: Scripts/interop-venv makes them). Exits non-zero on a mismatch."""
import json, os, subprocess, sys
import torch
from safetensors import safe_open
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationConfig

dsconv, work = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
trained = os.path.join(root, "Tests/Fixtures/trained-dsv2.5")
os.makedirs(work, exist_ok=True)
torch.set_num_threads(2)


def run(*args):
    r = subprocess.run([dsconv, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"dsconv {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def tensors(directory):
    index = json.load(open(os.path.join(directory, "model.safetensors.index.json")))["weight_map"]
    handles = {f: safe_open(os.path.join(directory, f), "pt") for f in set(index.values())}
    return {name: handles[f].get_tensor(name) for name, f in index.items()}


def scheme_of(config, module):
    q = QuantizationConfig.model_validate(config["quantization_config"])
    exact = [s for s in q.config_groups.values() if module in s.targets]
    return (exact or [s for s in q.config_groups.values() if "Linear" in s.targets])[0]


cases = {
    "int8-rtn": ["--bits", "8"],
    "int4-g32-gptq": ["--bits", "4", "--group-size", "32", "--method", "gptq", "--text", trained + "/calibration.txt", "--seq-len", "256"],
    "int4-g32-asym": ["--bits", "4", "--group-size", "32", "--asymmetric"],
    "int4-g128-fallback": ["--bits", "4", "--group-size", "128", "--group-fallback"],
}
failures = 0
for name, args in cases.items():
    out, deq = os.path.join(work, name), os.path.join(work, name + "-bf16")
    run("quantize", trained, *args, "--out", out, "--force")
    run("dequantize", out, "--out", deq, "--force")
    config = json.load(open(os.path.join(out, "config.json")))
    ours, theirs_in = tensors(deq), tensors(out)
    modules = sorted(k[: -len(".weight_packed")] for k in theirs_in if k.endswith(".weight_packed"))
    bad = 0
    for m in modules:
        sd = {k[len(m) + 1:]: v for k, v in theirs_in.items() if k.startswith(m + ".weight_")}
        w = PackedQuantizationCompressor.decompress(sd, scheme_of(config, m))["weight"]
        mine = ours[m + ".weight"]
        if w.dtype != mine.dtype or w.shape != mine.shape or not torch.equal(w, mine):
            diff = (w.float() - mine.float()).abs()
            print(f"  {name}: {m}: compressed-tensors and dsconv differ at {int((diff > 0).sum())} values (max {float(diff.max()):.3g})")
            bad += 1
    print(f"{name}: {len(modules)} quantized modules decompressed by compressed-tensors, {len(modules) - bad} bit-identical to dsconv's")
    failures += bad

# The calibration statistics file in h5py (Formats/calibration-h5.md).
import h5py
stats = os.path.join(work, "stats.h5")
run("calibrate", trained, "--text", trained + "/calibration.txt", "--seq-len", "256", "--samples", "4", "--out", stats, "--force")
with h5py.File(stats, "r") as f:
    cfg = json.load(open(os.path.join(trained, "config.json")))
    problems = []
    if f.attrs["format"] != b"dsconv-calibration" or int(f.attrs["version"]) != 1:
        problems.append("format/version attributes")
    if int(f.attrs["tokens"]) != 4 * 256 or int(f.attrs["hidden_size"]) != cfg["hidden_size"]:
        problems.append("tokens/hidden_size attributes")
    g = f["model.layers.1.mlp.shared_experts.gate_proj"]
    if g["mean_abs"].shape != (cfg["hidden_size"],) or g["mean_abs"].dtype != "float32" or g["sum_sq"].dtype != "float64" \
            or int(g["tokens"][0]) != 4 * 256 or not (g["max_abs"][()] >= g["mean_abs"][()]).all():
        problems.append("shared expert statistics")
    routed = f["routing/layer_1"][()]
    if routed.shape != (cfg["n_routed_experts"],) or int(routed.sum()) != 4 * 256 * cfg["num_experts_per_tok"]:
        problems.append("routing counts")
    e3 = f["model.layers.1.mlp.experts.3.up_proj"]
    if int(e3["tokens"][0]) != int(routed[3]):
        problems.append("expert 3's token count vs the routing table")
print(f"calibration statistics in h5py {h5py.__version__}: " + ("as documented" if not problems else "PROBLEMS: " + ", ".join(problems)))
failures += len(problems)

# transformers on the int4 GPTQ output.
from transformers import AutoModelForCausalLM, AutoTokenizer, CompressedTensorsConfig
from safetensors.torch import load_file
out = os.path.join(work, "int4-g32-gptq")
tok = AutoTokenizer.from_pretrained(out)
text = tok.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True, tokenize=False)
ids = tok(text, add_special_tokens=False)["input_ids"]
logits_file = os.path.join(work, "dsconv-logits.safetensors")
run("verify", out, "--prompt-ids", ",".join(map(str, ids)), "--max-new-tokens", "1", "--logits-out", logits_file, "--force")
ours = load_file(logits_file)["logits"].double()
model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16, attn_implementation="eager",
                                             quantization_config=CompressedTensorsConfig(run_compressed=False)).eval()
for module in model.modules():  # the BF16 weights compressed-tensors decompressed, computed in f32
    for pname, p in list(module.named_parameters(recurse=False)):
        if p.dtype == torch.bfloat16:
            p.data = p.data.float()
with torch.no_grad():
    theirs = model(torch.tensor([ids])).logits[0, -1].double()
rel = float((theirs - ours).norm() / theirs.norm())
print(f"transformers {__import__('transformers').__version__} on {out}: logits relative L2 vs dsconv {rel:.3g} (limit 1e-4)")
if rel > 1e-4:
    failures += 1
# transformers on the asymmetric int4 output: its verdict against inspect's statement.
asym = os.path.join(work, "int4-g32-asym")
said = json.loads(run("inspect", asym, "--json").stdout)["serving"]["transformers"]
try:
    m = AutoModelForCausalLM.from_pretrained(asym, dtype=torch.bfloat16, quantization_config=CompressedTensorsConfig(run_compressed=False))
    with torch.no_grad():
        m(torch.tensor([ids]))
    loads, why = True, ""
except Exception as e:  # noqa: BLE001 - any refusal is transformers' verdict
    loads, why = False, " ".join(str(e).split())[:200]
print(f"transformers {__import__('transformers').__version__} on {asym}: {'loads' if loads else 'refuses (' + why + ')'}; "
      f"inspect says {'loads' if said['loads'] else 'refused: ' + said['rule']}")
if loads != said["loads"]:
    failures += 1
sys.exit(1 if failures else 0)
