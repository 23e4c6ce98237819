#!/usr/bin/env python3
"""Serving check: vLLM's own loading code judges dsconv's outputs, and `dsconv inspect` must agree.

For V2.5-width and V2-Lite-width synths (2 layers, 8 routed experts, real widths), each scheme of
the matrix below is written by `dsconv quantize`; vLLM 0.34.0's engine-config checks, model
construction (`get_quant_method`, kernel choice, `create_weights` at each rank's partition sizes)
and `load_weights` run on the CPU through the harness in Scripts/vllm-oracle (a copy of the
project's shared harness; `vllm_accepts.py`, imported here: one process per GPU generation), at TP 1, 2, 4 and 8, on
capability 8.0 (A100) and 9.0 (H100/H200), with and without expert parallelism. Then:
  * every cell of `dsconv inspect --json`'s `serving.vllm` statements must equal vLLM's verdict;
  * the default `--bits 4` and `--bits 8` outputs of the V2.5-width synth must load everywhere;
  * an asymmetric int8 request must be refused by `dsconv quantize` before anything is written;
  * `inspect`'s weight_bytes_per_gpu must be within 0.5% of the bytes of the parameters vLLM's
    model holds on rank 0 and on the last rank (the harness's PARAMS), wherever vLLM accepts.
The matrix is printed as a Markdown table (README "Serving what dsconv writes").

    Scripts/serving-check [--dsconv PATH] [--work DIR] [--cases v25-int4,lite-int8,...] [--tp 1,2,4,8]

The virtualenv (vLLM 0.34.0, about 8.5 GB, made by the harness's own setup.sh on first use) lives
where that script puts it, ~/.cache/vllm-oracle/venv (VLLM_ORACLE_VENV moves it), outside the
clone and reused; the harness is Scripts/vllm-oracle (DSCONV_VLLM_ORACLE names another copy).
Exit 1 on any disagreement, 2 when the harness fails.
"""
import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPABILITIES = ["8.0", "9.0"]

# name -> (synth, quantize flags). None: the synth itself (BF16).
CASES = {
    "v25-bf16": ("v25", None),
    "v25-int4": ("v25", ["--bits", "4"]),
    "v25-int8": ("v25", ["--bits", "8"]),
    "v25-int4-asym": ("v25", ["--bits", "4", "--asymmetric"]),
    "v25-int4-g128-tp1-4": ("v25", ["--bits", "4", "--group-size", "128", "--serve-tp", "1,2,4"]),
    "v25-int8-channel-a100": ("v25", ["--bits", "8", "--group-size", "channel", "--serve-gpu", "a100"]),
    "lite-int4": ("lite", ["--bits", "4"]),
    "lite-int8": ("lite", ["--bits", "8"]),
}
# The defaults that must load at every TP and capability (the "done when").
MUST_LOAD = ["v25-int4", "v25-int8"]

SYNTHS = {
    "v25": ["--like", "deepseek-v2.5", "--layers", "2", "--experts", "8"],
    "lite": ["--like", "deepseek-v2-lite", "--layers", "2", "--experts", "8"],
}


def oracle_worker(args):
    """Runs inside the vLLM virtualenv: one capability, many (ckpt, tp, ep) jobs; JSON lines out."""
    sys.path.insert(0, args.oracle)
    import vllm_accepts as va

    maj, _, mnr = args.capability.partition(".")
    va.setup((int(maj), int(mnr or 0)))
    jobs = json.load(open(args.jobs))
    for job in jobs:
        va.PARAM_BYTES.clear()
        status, msg, _ = va.verdict(job["ckpt"], job["tp"], sorted({0, job["tp"] - 1}),
                                    expert_parallel=job["ep"])
        out = dict(job, capability=args.capability, status=status, message=msg,
                   params={str(k): v for k, v in va.PARAM_BYTES.items()})
        print("VERDICT " + json.dumps(out), flush=True)
        gc.collect()  # each verdict builds and loads a whole model; keep one at a time
    return 0


def run(cmd, **kw):
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsconv", default=os.path.join(ROOT, ".build/debug/dsconv"))
    ap.add_argument("--work", help="keep outputs here (default: a temporary directory, removed)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--tp", default="1,2,4,8")
    ap.add_argument("--oracle", default=os.environ.get("DSCONV_VLLM_ORACLE", os.path.join(ROOT, "Scripts/vllm-oracle")))
    ap.add_argument("--venv", default=os.environ.get("VLLM_ORACLE_VENV", os.path.expanduser("~/.cache/vllm-oracle/venv")))
    ap.add_argument("--oracle-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--capability", help=argparse.SUPPRESS)
    ap.add_argument("--jobs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.oracle_worker:
        return oracle_worker(args)

    if not os.path.exists(os.path.join(args.oracle, "vllm_accepts.py")):
        print(f"serving-check: skipped: no vLLM harness at {args.oracle} (set DSCONV_VLLM_ORACLE)")
        return 0
    py = os.path.join(args.venv, "bin", "python")
    if run([py, "-c", "import vllm"]).returncode != 0:
        print(f"serving-check: creating {args.venv} with {args.oracle}/setup.sh (vLLM 0.34.0; a few minutes)", flush=True)
        r = subprocess.run(["bash", os.path.join(args.oracle, "setup.sh")], env=dict(os.environ, VLLM_ORACLE_VENV=args.venv))
        if r.returncode != 0:
            print("serving-check: the harness's setup.sh failed")
            return 2
    tps = [int(t) for t in args.tp.split(",")]
    cases = args.cases.split(",")
    for c in cases:
        if c not in CASES:
            print(f"serving-check: unknown case {c} (known: {', '.join(CASES)})")
            return 2
    work = args.work or tempfile.mkdtemp(prefix="dsconv-serving-")
    os.makedirs(work, exist_ok=True)
    failures = []
    try:
        tokenizer = os.path.join(ROOT, "Tests/Fixtures/deepseek-v2.5-tokenizer")
        for s in sorted({CASES[c][0] for c in cases}):
            out = os.path.join(work, s)
            if not os.path.exists(os.path.join(out, "config.json")):
                r = run([args.dsconv, "synth", *SYNTHS[s], "--tokenizer", tokenizer, "--out", out, "--force"])
                if r.returncode != 0:
                    print(r.stderr)
                    return 2
        # Asymmetric int8: refused before anything is written.
        asym = os.path.join(work, "v25-int8-asym")
        r = run([args.dsconv, "quantize", os.path.join(work, "v25"), "--bits", "8", "--asymmetric", "--out", asym])
        if r.returncode != 2 or os.path.exists(asym) or os.path.exists(asym + ".partial"):
            failures.append(f"quantize --bits 8 --asymmetric: exit {r.returncode} (2 expected, nothing written)")
        else:
            why = next((l for l in r.stderr.splitlines() if "rror" in l), r.stderr.strip())
            print("quantize --bits 8 --asymmetric refused before writing: " + why.strip())

        statements = {}
        for c in cases:
            synth, flags = CASES[c]
            ckpt = os.path.join(work, synth)
            if flags is not None:
                ckpt = os.path.join(work, c)
                if not os.path.exists(os.path.join(ckpt, "config.json")):
                    r = run([args.dsconv, "quantize", os.path.join(work, synth), *flags, "--out", ckpt, "--force"])
                    if r.returncode != 0:
                        failures.append(f"{c}: quantize {' '.join(flags)} exited {r.returncode}: {r.stderr.strip()[-400:]}")
                        continue
            r = run([args.dsconv, "inspect", ckpt, "--json"])
            if r.returncode != 0:
                failures.append(f"{c}: inspect exited {r.returncode}")
                continue
            statements[c] = (ckpt, json.loads(r.stdout))

        verdicts = {}
        for cap in CAPABILITIES:
            jobs = [{"case": c, "ckpt": ckpt, "tp": tp, "ep": ep}
                    for c, (ckpt, _) in statements.items() for tp in tps for ep in (False, True)]
            jobs_file = os.path.join(work, f"jobs-{cap}.json")
            json.dump(jobs, open(jobs_file, "w"))
            env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR")
            p = subprocess.run([py, os.path.abspath(__file__), "--oracle-worker", "--oracle", args.oracle,
                                "--capability", cap, "--jobs", jobs_file], text=True, capture_output=True, env=env)
            got = [json.loads(l[len("VERDICT "):]) for l in p.stdout.splitlines() if l.startswith("VERDICT ")]
            if p.returncode != 0 or len(got) != len(jobs):
                print(p.stdout[-2000:], p.stderr[-4000:])
                print(f"serving-check: the harness failed on capability {cap}")
                return 2
            for v in got:
                if v["status"] == "error":
                    print(f"serving-check: harness error on {v['case']} tp {v['tp']} capability {cap}: {v['message']}")
                    return 2
                verdicts[(v["case"], v["tp"], cap, v["ep"])] = v

        # Compare, and print the matrix.
        print("\n| output | GPU | " + " | ".join(f"TP {tp}" for tp in tps) + " |")
        print("|---|---|" + "---|" * len(tps))
        for c, (ckpt, info) in statements.items():
            said = {(s["tp"], s["capability"], s["expert_parallel"]): s for s in info["serving"]["vllm"]}
            for cap in CAPABILITIES:
                cells = []
                for tp in tps:
                    cell = []
                    for ep in (False, True):
                        v = verdicts[(c, tp, cap, ep)]
                        accepted = v["status"] == "accepted"
                        s = said.get((tp, cap, ep))
                        if s is None or s["loads"] != accepted:
                            failures.append(f"{c} tp {tp} capability {cap}{' expert-parallel' if ep else ''}: vLLM "
                                            f"{'accepts' if accepted else 'refuses (' + v['message'][:300] + ')'}; "
                                            f"inspect says {'nothing' if s is None else ('loads' if s['loads'] else 'refused: ' + s['rule'])}")
                        if c in MUST_LOAD and not ep and not accepted:
                            failures.append(f"{c}: the default output is refused at tp {tp} capability {cap}: {v['message'][:300]}")
                    plain, ep_ok = (verdicts[(c, tp, cap, e)]["status"] == "accepted" for e in (False, True))
                    cells.append("loads" if plain else ("EP only" if ep_ok else "**refused**"))
                gpu = {"8.0": "A100", "9.0": "H100"}[cap]
                print(f"| {c} | {gpu} | " + " | ".join(cells) + " |")
        # Memory: inspect's per-GPU weights against what vLLM's model holds per rank.
        print("\n| output | TP | vLLM rank 0 | vLLM last rank | inspect | worst difference |")
        print("|---|---|---|---|---|---|")
        for c, (ckpt, info) in statements.items():
            for tp in tps:
                v = verdicts[(c, tp, CAPABILITIES[-1], False)]
                if v["status"] != "accepted" or not v["params"]:
                    continue
                ours = info["weight_bytes_per_gpu"][str(tp)]
                theirs = [v["params"][k] for k in sorted(v["params"], key=int)]
                worst = max(abs(ours - t) / t for t in theirs)
                if worst > 0.005:
                    failures.append(f"{c} tp {tp}: inspect says {ours} bytes per GPU, vLLM holds {theirs} (off by {worst:.2%})")
                print(f"| {c} | {tp} | {theirs[0] / 1e9:.4f} GB | {theirs[-1] / 1e9:.4f} GB | {ours / 1e9:.4f} GB | {worst:.3%} |")
        print()
        for f in failures:
            print("FAIL " + f)
        n = sum(1 for _ in verdicts)
        print(f"serving-check: {n} vLLM verdicts, {len(failures)} disagreements (verdicts, refusals of defaults, memory)")
        return 1 if failures else 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
