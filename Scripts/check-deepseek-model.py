#!/usr/bin/env python3
"""Run DeepSeek's own inference model over `dsconv reshard --layout deepseek` output; compare logits.

DeepSeek's distributed inference (`inference/model.py` of github.com/deepseek-ai/DeepSeek-V3) loads
`model{rank}-mp{N}.safetensors` with a ModelArgs JSON. `dsconv reshard --layout deepseek` writes
both: the rank files and generate-config.json (ModelArgs derived from config.json: mscale from
rope_scaling.mscale_all_dim, expert groups, route_scale, q_lora_rank 0 for V2-Lite, max_seq_len
above original_seq_len so YaRN applies). For each model this script takes dsconv's own logits for
a fixed token sequence (`dsconv verify --prompt-ids ... --logits-out`), reshards it for each
model-parallel size, runs DeepSeek's Transformer over every rank file with
ModelArgs(**generate-config.json) -- torchrun, gloo, fp32 on the CPU, the bf16 weights loaded with
safetensors' load_model as generate.py does and then widened -- and compares the last-position
logits: relative L2 ||theirs - ours|| / ||ours|| must stay within --max-rel-l2 (1e-4). For
V2.5-structured models (q_lora_rank set) it also prints, for information only, the figure with the
mscale key removed at the smallest size: ModelArgs' default 1.0, what the shipped
configs/config_236B.json gives, i.e. why the derived file matters.

We do not ship DeepSeek's code: point --deepseek-v3 (or DSCONV_DEEPSEEK_V3) at a directory that
holds its `inference/` folder, e.g.
    git -C DeepSeek-V3 archive HEAD inference | tar -x -C ~/src/ds3
Without one the script says it is skipped and exits 0, so CI may call it unconditionally.
model.py imports `kernel` (triton FP8 kernels); none of them runs with bf16 weights, so where that
import fails (no triton) a stub whose functions raise is put in its place.

    Scripts/check-deepseek-model.py --deepseek-v3 ~/src/ds3 [--model DIR ...] [--tp N ...]

Fixtures without tokenizer files (synth-lite) borrow tiny-dsv2.5's for verify and reshard, which
insist on them; their ids are then a fixed sequence below the vocabulary size.
Needs torch and safetensors (the interop virtualenv of Scripts/interop has them):
    ~/.cache/dsconv/interop/bin/python Scripts/check-deepseek-model.py ...
Exit status: 0 when every logits comparison is within the limit (or skipped), 1 on any larger
difference or failure of DeepSeek's model to load or run the files, 2 on bad arguments.
"""
import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
MODELS = [os.path.join(FIXTURES, "tiny-dsv2.5"), os.path.join(FIXTURES, "synth-lite")]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
TEXT = "The quick brown fox jumps over the lazy dog."
# ModelArgs fields that describe the run, not the checkpoint.
RUN_FIELDS = {"max_batch_size", "scale_fmt"}


def import_deepseek_model(inference):
    """Import DeepSeek's model.py; a stub `kernel` replaces the triton one when that cannot load."""
    sys.path.insert(0, inference)
    kernel = "triton kernel.py"
    try:
        import kernel as _  # noqa: F401  (triton; only used for fp8 weights)
    except Exception as e:  # ImportError without triton; anything else triton may raise here
        stub = types.ModuleType("kernel")

        def unavailable(name):
            def f(*_, **__):
                raise RuntimeError(f"kernel.{name} called: the stub stands in for triton ({e})")
            return f
        for name in ("act_quant", "weight_dequant", "fp8_gemm"):
            setattr(stub, name, unavailable(name))
        sys.modules["kernel"] = stub
        kernel = f"stub kernel ({type(e).__name__}: {e})"
    spec = importlib.util.spec_from_file_location("deepseek_v3_model", os.path.join(inference, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, kernel


def worker(jobfile):
    """One torchrun rank: every job's logits through DeepSeek's Transformer; rank 0 writes them."""
    import dataclasses
    import torch
    import torch.distributed as dist
    from safetensors.torch import load_model, save_file
    spec = json.load(open(jobfile))
    model_py, kernel = import_deepseek_model(spec["inference"])
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    # model.py's Linear keeps bf16 (Transformer.__init__ sets Linear.dtype from args.dtype); norms,
    # embedding, gate and head take the default dtype. Load the files as generate.py does, then
    # widen everything to fp32 (exact for bf16) so the comparison is not bf16 rounding.
    torch.set_default_dtype(torch.float32)
    for job in spec["jobs"]:
        args = model_py.ModelArgs(**job["config"])
        model = model_py.Transformer(args)
        load_model(model, os.path.join(job["ckpt"], f"model{rank}-mp{world_size}.safetensors"))
        model.float()
        logits = model(torch.tensor([job["ids"]], dtype=torch.long), start_pos=0)
        if rank == 0:
            save_file({"logits": logits[0].float().contiguous()}, job["out"])
            defaults = [f.name for f in dataclasses.fields(model_py.ModelArgs)
                        if f.name not in job["config"] and f.name not in RUN_FIELDS]
            json.dump({"kernel": kernel, "defaulted": defaults}, open(job["out"] + ".json", "w"))
        dist.barrier()
    dist.destroy_process_group()


def run(cmd, what):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(f"FAILED: {what} (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout[-4000:]}", file=sys.stderr)
    return p


def staged_source(model, tmp):
    """The model directory, or a copy of it in symlinks with tiny-dsv2.5's tokenizer files."""
    if all(os.path.exists(os.path.join(model, n)) for n in TOKENIZER_FILES):
        return model, True
    src = os.path.join(tmp, os.path.basename(os.path.normpath(model)) + "-src")
    os.mkdir(src)
    for name in os.listdir(model):
        os.symlink(os.path.abspath(os.path.join(model, name)), os.path.join(src, name))
    for name in TOKENIZER_FILES:
        if not os.path.exists(os.path.join(src, name)):
            os.symlink(os.path.join(MODELS[0], name), os.path.join(src, name))
    return src, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deepseek-v3", default=os.environ.get("DSCONV_DEEPSEEK_V3"),
                    help="a directory holding DeepSeek-V3's inference/ folder (default: $DSCONV_DEEPSEEK_V3)")
    ap.add_argument("--model", action="append", help="a DeepSeek-V2/V2.5 BF16 checkpoint directory "
                    "(repeatable; default Tests/Fixtures/tiny-dsv2.5 and Tests/Fixtures/synth-lite)")
    ap.add_argument("--tp", type=int, action="append", help="model-parallel size (repeatable; default 1, 2)")
    ap.add_argument("--dsconv", default=os.path.join(ROOT, ".build", "debug", "dsconv"))
    ap.add_argument("--max-rel-l2", type=float, default=1e-4)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    start = time.monotonic()
    if not args.deepseek_v3:
        print("skipped: no DeepSeek-V3 checkout (give --deepseek-v3 DIR or set DSCONV_DEEPSEEK_V3)")
        sys.exit(0)
    if not os.path.isdir(args.deepseek_v3):
        print(f"skipped: {args.deepseek_v3} (the DeepSeek-V3 checkout) does not exist")
        sys.exit(0)
    inference = os.path.abspath(os.path.join(args.deepseek_v3, "inference"))
    if not os.path.isfile(os.path.join(inference, "model.py")):
        print(f"error: {inference}/model.py not found (--deepseek-v3 must hold DeepSeek-V3's inference/)", file=sys.stderr)
        sys.exit(2)
    if not os.path.exists(args.dsconv):
        print(f"error: {args.dsconv} not found (swift build first, or give --dsconv)", file=sys.stderr)
        sys.exit(2)
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError as e:
        print(f"error: {e} (run with the interop virtualenv: ~/.cache/dsconv/interop/bin/python)", file=sys.stderr)
        sys.exit(2)
    models = args.model or MODELS
    for m in models:
        if not os.path.isfile(os.path.join(m, "config.json")):
            print(f"error: {m}/config.json not found", file=sys.stderr)
            sys.exit(2)
    tps = sorted(set(args.tp or [1, 2]))
    if any(tp < 1 for tp in tps):
        print("error: --tp must be at least 1", file=sys.stderr)
        sys.exit(2)
    dsconv = os.path.abspath(args.dsconv)

    failures = 0
    with tempfile.TemporaryDirectory(prefix="dsconv-ds-model-") as tmp:
        jobs = {tp: [] for tp in tps}  # per model-parallel size: one torchrun for every model
        checks = []  # (label, ours, theirs, limited)
        for m in models:
            name = os.path.basename(os.path.normpath(m))
            src, own_tokenizer = staged_source(m, tmp)
            if own_tokenizer:
                p = run([dsconv, "tokenize", "--model", src, "--json", TEXT], f"{name}: tokenize")
                if p.returncode != 0:
                    sys.exit(1)
                ids = json.loads(p.stdout)["ids"]
            else:
                vocab = json.load(open(os.path.join(m, "config.json")))["vocab_size"]
                ids = [(7 + 37 * i) % vocab for i in range(12)]
            ref = os.path.join(tmp, f"{name}-dsconv.safetensors")
            p = run([dsconv, "verify", src, "--prompt-ids", ",".join(map(str, ids)), "--max-new-tokens", "1",
                     "--logits-out", ref, "--threads", "1"], f"{name}: dsconv verify")
            if p.returncode != 0:
                sys.exit(1)
            borrowed = "" if own_tokenizer else " (no tokenizer of its own: tiny-dsv2.5's lent to dsconv)"
            print(f"{name}: {len(ids)} ids {ids}{borrowed}")
            for tp in tps:
                out = os.path.join(tmp, f"{name}-mp{tp}")
                p = run([dsconv, "reshard", src, "--tp", str(tp), "--experts", "ep", "--layout", "deepseek",
                         "--out", out, "--threads", "1"], f"{name}: dsconv reshard --tp {tp}")
                if p.returncode != 0:
                    sys.exit(1)
                config = json.load(open(os.path.join(out, "generate-config.json")))
                theirs = os.path.join(tmp, f"{name}-mp{tp}-deepseek.safetensors")
                jobs[tp].append({"ckpt": out, "config": config, "ids": ids, "out": theirs})
                checks.append((f"{name} mp {tp}", ref, theirs, True))
                if tp == min(tps) and "mscale" in config and config.get("q_lora_rank"):
                    bare = {k: v for k, v in config.items() if k != "mscale"}
                    theirs = os.path.join(tmp, f"{name}-mp{tp}-nomscale.safetensors")
                    jobs[tp].append({"ckpt": out, "config": bare, "ids": ids, "out": theirs})
                    checks.append((f"{name} mp {tp} without mscale (1.0, as configs/config_236B.json; not {config['mscale']})",
                                   ref, theirs, False))

        env = dict(os.environ, OMP_NUM_THREADS="1")
        for tp, tp_jobs in jobs.items():
            jobfile = os.path.join(tmp, f"jobs-mp{tp}.json")
            json.dump({"inference": inference, "jobs": tp_jobs}, open(jobfile, "w"))
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(tp),
                   os.path.abspath(__file__), "--worker", jobfile]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            if p.returncode != 0:
                print(f"FAILED: DeepSeek's model.py at mp {tp} (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout[-6000:]}")
                failures += 1
        notes = set()
        for label, ours, theirs, limited in checks:
            if not os.path.exists(theirs):
                print(f"{label}: no logits from DeepSeek's model")
                failures += int(limited)
                continue
            a = load_file(theirs)["logits"].double()
            b = load_file(ours)["logits"].double()
            info = json.load(open(theirs + ".json"))
            notes.add(f"model.py imported with the {info['kernel']}")
            if info["defaulted"] and limited:
                notes.add(f"{label.split(' mp ')[0]}: generate-config.json leaves ModelArgs defaults for {info['defaulted']}")
            if a.shape != b.shape:
                print(f"{label}: logits shape {tuple(a.shape)} from DeepSeek's model, {tuple(b.shape)} from dsconv")
                failures += int(limited)
                continue
            rel = (a - b).norm().item() / b.norm().item() if b.norm().item() > 0 else math.inf
            same_top = int(a.argmax()) == int(b.argmax())
            verdict = ("OK" if rel <= args.max_rel_l2 else f"FAIL (limit {args.max_rel_l2:g})") if limited else "(information)"
            print(f"{label}: rel L2 {rel:.3e}, max |diff| {(a - b).abs().max().item():.3e}, "
                  f"top-1 {'same' if same_top else f'{int(a.argmax())} vs dsconv {int(b.argmax())}'}  {verdict}")
            if limited and not rel <= args.max_rel_l2:
                failures += 1
        for n in sorted(notes):
            print("note:", n)
    print(f"{'OK' if not failures else f'{failures} failure(s)'} in {time.monotonic() - start:.1f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
