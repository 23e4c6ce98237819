#!/usr/bin/env python3
"""Regenerates the references of the tiny DeepSeek-V2.5 fixture (Tests/Fixtures/tiny-dsv2.5) from its
committed BF16 checkpoint with Hugging Face transformers, or checks the committed ones (--check).

Recipe (Tests/Fixtures/README-fixtures.md): native DeepseekV2ForCausalLM.from_pretrained(dir,
dtype=bfloat16, attn_implementation="eager").float(), i.e. fp32 compute from the bf16 weights, on CPU
with 2 threads; full-sequence forwards without cache. The 8 prompts' inputs (kind, description,
messages or text) are read from the committed reference.json; chat prompts are rendered with the
V2.5 template (which writes BOS), raw/FIM prompts are [BOS] + encode(text). Everything else is computed:
  reference.json    ids, top-10 logits at every position, last top-1 margin, routed experts/weights/
                    margins of every token at each MoE layer, a 16-token greedy continuation (generate
                    with cache, EOS not stopping; each token re-checked against, and its step_topk
                    taken from, a full recompute without cache), the model's file hashes and stats.
                    Floats have 9 significant digits (enough to recover a float32).
  reference-logits.safetensors               fp32 last-position logits, keys prompt_<index>
  reference-prompt0-activations.safetensors  prompt 0: embeddings, per layer the attention and MLP
                    outputs, residual stream and router logits, and the final norm
  reference-verification.json  agreement of transformers with `original_forward` below, a plain
                    PyTorch fp32 forward written from the original DeepSeek remote code (per-expert
                    tensors, original config, de-interleaved rope + rotate_half, moe_infer), and a
                    check that transformers loads every checkpoint tensor unchanged.

Versions: the virtualenv Scripts/interop creates (~/.cache/dsconv/interop; torch 2.15.0, transformers
5.24.0, tokenizers 0.23.3, safetensors 0.8.0, numpy 2.4.6). From the repository root:
    ~/.cache/dsconv/interop/bin/python Scripts/make-tiny-reference.py --check
    ~/.cache/dsconv/interop/bin/python Scripts/make-tiny-reference.py --out DIR [--model MODEL_DIR]
--check regenerates into a temporary directory (or --out) and exits 1 on a mismatch: ids, texts and
structure must be equal, floats within |a - b| <= ATOL + RTOL*|b|, and the agreement statistics of
the verification (max |diff| between two fp32 implementations) at most BOUND. About 15-30 s on 2 idle cores."""
import argparse, hashlib, json, math, platform, statistics, sys, tempfile
from pathlib import Path
import jinja2, numpy, safetensors, tokenizers, torch, transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, DeepseekV2ForCausalLM

OUTPUTS = ["reference.json", "reference-logits.safetensors", "reference-prompt0-activations.safetensors",
           "reference-verification.json"]
NEW_TOKENS, TOPK = 16, 10
TOL = 0.005                           # verification: top-1 margins and routing weights
ATOL, RTOL, BOUND = 1e-4, 1e-5, 1e-3  # --check; fp32 summation-order noise on logits ~ +-40 is ~1e-5
MODEL_NOTES = {  # how the committed checkpoint was made (it is an input here, not regenerated)
    "name": "tiny-dsv2.5", "seed": 20240905, "init": {
        "linear_and_embedding": "N(0, 0.2^2) via transformers _init_weights after torch.manual_seed(seed), fp32",
        "rmsnorm_weights": "U(0.5, 1.5) from torch.Generator().manual_seed(seed + 1) (all input/post-attention/"
                           "q_a/kv_a/final norms)",
        "lm_head": "N(0, 1.0^2) from the same generator, overriding the default init; rows >= 100018 (vocab "
                   "padding, no token string) ~ N(0, 0.02^2) so they never win an argmax",
        "stored_dtype": "bfloat16 (fp32 init rounded with Tensor.to(torch.bfloat16))"},
    "save": "DeepseekV2ForCausalLM.save_pretrained(max_shard_size='200KB'); config.json / generation_config.json "
            "then rewritten in the original DeepSeek layout"}
ROUTER_NOTES = (
    "router[layer].expert_ids: routed experts chosen for every token (rows) at MoE layer `layer`, sorted by "
    "routing weight descending; weights are the gate softmax probabilities after top-k selection, multiplied by "
    "routed_scaling_factor (norm_topk_prob is false). expert_margin: k-th minus (k+1)-th largest softmax "
    "probability among experts of the selected groups (all experts for greedy routing); group_margin "
    "(group_limited_greedy only): topk_group-th minus (topk_group+1)-th largest group score (max probability in "
    "the group). Small margins mark tokens whose routing may legitimately flip under lower precision.")
ROPE_PAIRING = ("rotary dims of q_pe / k_pe are rotated in pairs (2i, 2i+1) with frequency rope_inv_freq[i] "
                "(original code: de-interleave, then rotate_half)")

def r9(x):  # floats (nested lists too) -> 9 significant digits
    return [r9(v) for v in x] if isinstance(x, list) else float(f"{x:.9g}")

def topk_json(logits):
    top = logits.topk(TOPK, -1)
    return {"k": TOPK, "ids": top.indices.tolist(), "values": r9(top.values.tolist())}, top.values[:, 0] - top.values[:, 1]

def prompt_ids(tok, src):
    if "messages" in src:  # the template writes BOS itself
        text = tok.apply_chat_template(src["messages"], add_generation_prompt=True, tokenize=False)
        return text, tok(text, add_special_tokens=False)["input_ids"]
    source = src["text"].removeprefix(tok.bos_token)
    return tok.bos_token + source, [tok.bos_token_id] + tok(source, add_special_tokens=False)["input_ids"]

def traced_forward(model, ids):
    """transformers, no cache: ids -> logits [T, V], activations by name, gate outputs by MoE layer."""
    acts, hooks, m = {}, [], model.model
    def tap(module, name, pick):
        hooks.append(module.register_forward_hook(lambda mod, i, out: acts.__setitem__(name, pick(out))))
    tap(m.embed_tokens, "embeddings", lambda o: o[0])
    for i, layer in enumerate(m.layers):
        tap(layer.self_attn, f"layers.{i}.self_attn_output", lambda o: o[0][0])  # o_proj output
        tap(layer.mlp, f"layers.{i}.mlp_output", lambda o: o[0])
        tap(layer, f"layers.{i}.hidden_states", lambda o: (o[0] if isinstance(o, tuple) else o)[0])
        if hasattr(layer.mlp, "gate"):  # -> (router_logits [T, E], weights [T, k], expert ids [T, k])
            tap(layer.mlp.gate, f"gate.{i}", lambda o: o)
    tap(m.norm, "final_norm", lambda o: o[0])
    try:
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    finally:
        for h in hooks: h.remove()
    gates = {k.split(".")[1]: acts.pop(k) for k in [k for k in acts if k.startswith("gate.")]}
    acts |= {f"layers.{i}.router_logits": g[0] for i, g in gates.items()}
    return logits, dict(sorted(acts.items())), gates

def route_json(logits, weights, ids, c):
    """One MoE layer's gate outputs -> experts sorted by weight, and the router's margins."""
    order = weights.argsort(-1, descending=True)
    probs = logits.softmax(-1, dtype=torch.float32)
    groups = probs.view(len(probs), c.n_group, -1).max(-1).values
    keep = torch.zeros_like(groups).scatter_(1, groups.topk(c.topk_group, -1).indices, 1)
    ranked = probs.masked_fill(keep.repeat_interleave(probs.shape[1] // c.n_group, -1) == 0, 0).sort(-1, descending=True).values
    gs, k, g = groups.sort(-1, descending=True).values, c.num_experts_per_tok, c.topk_group
    return {"expert_ids": ids.gather(-1, order).tolist(), "weights": r9(weights.gather(-1, order).tolist()),
            "expert_margin": r9((ranked[:, k - 1] - ranked[:, k]).tolist()),
            "group_margin": r9((gs[:, g - 1] - gs[:, g]).tolist())}

def greedy(model, ids):
    """16 greedy tokens with the KV cache, each checked against a full recompute; -> ids, recomputed logits, max diff."""
    out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                         eos_token_id=None, use_cache=True, output_logits=True, return_dict_in_generate=True)
    new, cached = out.sequences[0, len(ids):].tolist(), torch.stack(out.logits)[:, 0]
    again = torch.stack([model(torch.tensor([ids + new[:j]]), use_cache=False).logits[0, -1] for j in range(NEW_TOKENS)])
    assert again.argmax(-1).tolist() == new, f"cached and recomputed greedy tokens differ for {ids}"
    return new, again, (again - cached).abs().max().item()

def yarn(c):
    """Original DeepseekV2YarnRotaryEmbedding and attention: -> inv_freq, cos/sin scale, softmax scale."""
    s, d, base = c["rope_scaling"], c["qk_rope_head_dim"], c["rope_theta"]
    mscale = lambda f, m: 1.0 if f <= 1 else 0.1 * m * math.log(f) + 1.0
    dim_at = lambda rot: d * math.log(s["original_max_position_embeddings"] / (rot * 2 * math.pi)) / (2 * math.log(base))
    low, high = max(math.floor(dim_at(s["beta_fast"])), 0), min(math.ceil(dim_at(s["beta_slow"])), d - 1)
    extra = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    inter = 1.0 / (s["factor"] * base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high + (0.001 if low == high else 0) - low)).clamp(0, 1)
    softmax_scale = (c["qk_nope_head_dim"] + d) ** -0.5 * mscale(s["factor"], s["mscale_all_dim"]) ** 2
    return inter * ramp + extra * (1 - ramp), mscale(s["factor"], s["mscale"]) / mscale(s["factor"], s["mscale_all_dim"]), softmax_scale

def original_forward(W, c, ids):
    """Independent fp32 forward after the original remote code: ids -> logits [T, V], activations, routes."""
    T, H, eps = len(ids), c["num_attention_heads"], c["rms_norm_eps"]
    nope, rope, vd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    rms = lambda x, w, e=eps: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e))
    silu = torch.nn.functional.silu
    mlp = lambda p, x: (silu(x @ W[p + "gate_proj.weight"].T) * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T
    def rotate(x):  # [.., T, rope]: de-interleave pairs (2i, 2i+1) into halves, then rotate_half
        x = x.unflatten(-1, (rope // 2, 2)).transpose(-1, -2).flatten(-2)
        return x * cos + torch.cat([-x[..., rope // 2:], x[..., :rope // 2]], -1) * sin
    inv_freq, mscale, scale = yarn(c)
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq).repeat(1, 2)
    cos, sin = freqs.cos() * mscale, freqs.sin() * mscale                                 # [T, rope]
    causal = torch.full((T, T), float("-inf")).triu(1)
    x = W["model.embed_tokens.weight"][ids]                                               # [T, hidden]
    acts, routes = {"embeddings": x}, {}
    for i in range(c["num_hidden_layers"]):
        p, a = f"model.layers.{i}.", f"layers.{i}."
        w = lambda n: W[p + n + ".weight"]
        h = rms(x, w("input_layernorm"))
        q = rms(h @ w("self_attn.q_a_proj").T, w("self_attn.q_a_layernorm"), 1e-6) @ w("self_attn.q_b_proj").T
        q_nope, q_pe = q.view(T, H, nope + rope).transpose(0, 1).split([nope, rope], -1)       # [H, T, .]
        latent, k_pe = (h @ w("self_attn.kv_a_proj_with_mqa").T).split([c["kv_lora_rank"], rope], -1)
        kv = rms(latent, w("self_attn.kv_a_layernorm"), 1e-6) @ w("self_attn.kv_b_proj").T
        k_nope, v = kv.view(T, H, nope + vd).transpose(0, 1).split([nope, vd], -1)              # [H, T, .]
        qs = torch.cat([q_nope, rotate(q_pe)], -1)
        ks = torch.cat([k_nope, rotate(k_pe).expand(H, T, rope)], -1)
        att = ((qs @ ks.transpose(1, 2)) * scale + causal).softmax(-1, dtype=torch.float32) @ v  # [H, T, vd]
        acts[a + "self_attn_output"] = o = att.transpose(0, 1).reshape(T, H * vd) @ w("self_attn.o_proj").T
        x = x + o
        h = rms(x, w("post_attention_layernorm"))
        if i < c["first_k_dense_replace"]:
            y = mlp(p + "mlp.", h)
        else:  # MoEGate: softmax, group_limited_greedy, no renormalisation; then moe_infer + shared experts
            acts[a + "router_logits"] = logits = h @ w("mlp.gate").T
            scores = logits.softmax(-1, dtype=torch.float32)
            groups = scores.view(T, c["n_group"], -1).max(-1).values
            keep = torch.zeros_like(groups).scatter_(1, groups.topk(c["topk_group"], -1, sorted=False).indices, 1)
            keep = keep.repeat_interleave(scores.shape[1] // c["n_group"], -1)
            tw, ti = scores.masked_fill(keep == 0, 0).topk(c["num_experts_per_tok"], -1, sorted=False)
            tw, k = tw * c["routed_scaling_factor"], ti.shape[1]
            routes[str(i)] = (ti, tw)
            order = ti.view(-1).argsort()  # tokens sorted by expert, one batch per expert
            chunks = h[order // k].split(ti.view(-1).bincount(minlength=c["n_routed_experts"]).tolist())
            outs = torch.cat([mlp(f"{p}mlp.experts.{e}.", chunk) for e, chunk in enumerate(chunks) if len(chunk)])
            y = torch.empty_like(outs)
            y[order] = outs
            y = (y.view(T, k, -1) * tw[..., None]).sum(1) + mlp(p + "mlp.shared_experts.", h)
        acts[a + "mlp_output"] = y
        acts[a + "hidden_states"] = x = x + y
    acts["final_norm"] = x = rms(x, W["model.norm.weight"])
    return x @ W["lm_head.weight"].T, acts, routes

def expected_names(c):
    """The original DeepSeek tensor names for config c."""
    names = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    attn = ["q_a_proj", "q_a_layernorm", "q_b_proj", "kv_a_proj_with_mqa", "kv_a_layernorm", "kv_b_proj", "o_proj"]
    for i in range(c["num_hidden_layers"]):
        p, moe = f"model.layers.{i}.", i >= c["first_k_dense_replace"]
        names |= {p + n + ".weight" for n in ["input_layernorm", "post_attention_layernorm"] + ["self_attn." + s for s in attn]}
        mlps = ["mlp.shared_experts."] + [f"mlp.experts.{e}." for e in range(c["n_routed_experts"])] if moe else ["mlp."]
        names |= {p + m + n + ".weight" for m in mlps for n in ("gate_proj", "up_proj", "down_proj")}
        names |= {p + "mlp.gate.weight"} if moe else set()
    return names

def reload_differences(raw, state):
    """Checkpoint tensors that differ from transformers' loaded (bf16) parameters; experts are fused there."""
    bad = []
    for n, t in raw.items():
        if ".mlp.experts." in n:  # model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight
            parts = n.split(".")
            layer, e, proj = ".".join(parts[:3]), int(parts[5]), parts[6]
            fused = state[f"{layer}.mlp.experts.{'down_proj' if proj == 'down_proj' else 'gate_up_proj'}"][e]
            loaded = fused if proj == "down_proj" else fused.chunk(2)[proj == "up_proj"]  # gate rows, then up rows
        else:
            loaded = state[n]
        if not torch.equal(loaded.float(), t.float()): bad.append(n)
    return bad

def generate(model_dir, out_dir, prompts_file):
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    c = json.loads((model_dir / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = DeepseekV2ForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager")
    bf16_state = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.float().eval()
    shards = sorted(set(json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"].values()))
    raw = {k: v for s in shards for k, v in load_file(model_dir / s).items()}
    W = {k: v.float() for k, v in raw.items()}
    prompts, last_logits, cached_diff, margins, steps = [], {}, 0.0, [], []
    vf = {"max_abs_diff_last_logits": 0.0, "top1_mismatches_at_positions_with_margin_gt_atol": [],
          "router_mismatches": [], "greedy_mismatches": []}
    with torch.no_grad():
        for src in json.loads(Path(prompts_file).read_text())["prompts"]:
            i, (text, ids) = src["index"], prompt_ids(tok, src)
            logits, acts, gates = traced_forward(model, ids)
            topk, pos_margin = topk_json(logits)
            new, step_logits, diff = greedy(model, ids)
            step_topk, step_margin = topk_json(step_logits)
            cached_diff = max(cached_diff, diff)
            prompts.append({k: src[k] for k in ("index", "kind", "description", "messages") if k in src} | {
                "text": text, "input_ids": ids, "topk": topk, "last_top1_margin": r9(pos_margin[-1].item()),
                "router": {l: route_json(*g, model.config) for l, g in gates.items()},
                "greedy": {"new_ids": new, "text": tok.decode(new), "top1_margins": r9(step_margin.tolist()),
                           "step_topk": step_topk, "contains_eos": c["eos_token_id"] in new}})
            margins += [v[0] - v[1] for v in topk["values"]]  # the stats use the recorded (rounded) values
            steps += prompts[-1]["greedy"]["top1_margins"]
            last_logits[f"prompt_{i}"] = logits[-1].contiguous()
            # The independent forward: last logits, top-1 at every position, routes, greedy, activations.
            o_logits, o_acts, o_routes = original_forward(W, c, ids)
            vf["max_abs_diff_last_logits"] = max(vf["max_abs_diff_last_logits"], (o_logits[-1] - logits[-1]).abs().max().item())
            vf["top1_mismatches_at_positions_with_margin_gt_atol"] += [
                [i, t] for t in range(len(ids)) if o_logits[t].argmax() != logits[t].argmax() and pos_margin[t] > TOL]
            for l, (ti, tw) in o_routes.items():
                for t, (mine, theirs) in enumerate(zip(zip(ti.tolist(), tw.tolist()), zip(gates[l][2].tolist(), gates[l][1].tolist()))):
                    mine, theirs = dict(zip(*mine)), dict(zip(*theirs))
                    if mine.keys() != theirs.keys() or max(abs(mine[e] - theirs[e]) for e in mine) > TOL:
                        vf["router_mismatches"].append([i, int(l), t])
            seq = list(ids)
            for _ in range(NEW_TOKENS): seq.append(original_forward(W, c, seq)[0][-1].argmax().item())
            if seq[len(ids):] != new: vf["greedy_mismatches"].append(i)
            if i == 0:
                activations = {k: v.contiguous() for k, v in acts.items()}
                vf["prompt0_activation_max_abs_diff"] = {k: (o_acts[k] - v).abs().max().item() for k, v in acts.items()}
    inv_freq, cos_sin_scale, softmax_scale = yarn(c)
    rot, attn = model.model.rotary_emb, model.model.layers[0].self_attn
    derived_ok = (torch.equal(inv_freq, rot.inv_freq) and cos_sin_scale == rot.attention_scaling
                  and math.isclose(softmax_scale, attn.scaling, rel_tol=1e-12))
    reload_bad = reload_differences(raw, bf16_state)
    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__, "numpy": numpy.__version__,
                "jinja2": jinja2.__version__}
    names = "original DeepSeek names" if set(raw) == expected_names(c) else "UNEXPECTED names"
    dtypes = "all BF16" if all(t.dtype == torch.bfloat16 for t in raw.values()) else "NOT all BF16"
    verification = {
        "what": "reference outputs re-derived by an independent plain-PyTorch implementation of the original "
                "DeepSeek-V2 remote-code forward, fp32, same bf16 weights",
        "tolerance_used": TOL,
        "layout": f"{len(raw)} tensors, {names}, {dtypes}, {len(shards)} shards",
        "derived_constants": "rope inv_freq, cos/sin scale and softmax scale agree with the original formulas" if derived_ok else
            f"DISAGREE: {inv_freq.tolist()} {cos_sin_scale} {softmax_scale} (original) vs "
            f"{rot.inv_freq.tolist()} {rot.attention_scaling} {attn.scaling} (transformers)",
        "independent_forward": vf,
        "transformers_reload": f"DIFFER: {reload_bad}" if reload_bad else
            f"all {len(raw)} checkpoint tensors equal the loaded model's parameters",
        "versions": versions}
    sha = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
           for f in sorted(model_dir.iterdir()) if f.is_file() and f.name not in OUTPUTS}
    reference = {
        "format_version": 1,
        "model": MODEL_NOTES | {"tensors": len(raw), "parameters": sum(t.numel() for t in raw.values()),
                                "shards": shards, "files_sha256": sha},
        "config": c,
        "compute": {"library": "Hugging Face transformers DeepseekV2ForCausalLM (native implementation)",
                    "weights": "bf16 checkpoint loaded with dtype=torch.bfloat16, then model.float() (exact upcast)",
                    "dtype": "float32 everywhere (activations, attention softmax, router)", "attn_implementation": "eager",
                    "device": "cpu", "torch_threads": torch.get_num_threads(), "versions": versions},
        "generation": {"strategy": "greedy (do_sample=False)", "max_new_tokens": NEW_TOKENS, "use_cache": True,
                       "stop_on_eos": False, "verified": "each new token == argmax of full-recompute (no cache) logits "
                                                         "of prompt + previous new tokens",
                       "max_abs_diff_cached_vs_recompute_logits": cached_diff},
        "files": {"last_logits": "reference-logits.safetensors (key prompt_<index>, float32 [vocab_size])",
                  "prompt0_activations": "reference-prompt0-activations.safetensors"},
        "derived": {"rope_inv_freq": r9(rot.inv_freq.tolist()), "rope_cos_sin_scale": rot.attention_scaling,
                    "softmax_scale": attn.scaling, "rope_pairing": ROPE_PAIRING},
        "prompt0_activation_keys": list(activations),
        "router_notes": ROUTER_NOTES,
        "stats": {"greedy_steps": len(steps), "greedy_min_top1_margin": min(steps),
                  "greedy_steps_margin_gt_0.5": sum(m > 0.5 for m in steps), "prompt_positions": len(margins),
                  "prompt_positions_margin_gt_0.5": sum(m > 0.5 for m in margins),
                  "prompt_positions_median_margin": r9(statistics.median(margins))},
        "prompts": prompts}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / OUTPUTS[0]).write_text(json.dumps(reference, ensure_ascii=False) + "\n", encoding="utf-8")
    save_file(last_logits, out_dir / OUTPUTS[1], metadata={"format": "pt"})
    save_file(activations, out_dir / OUTPUTS[2], metadata={"format": "pt"})
    (out_dir / OUTPUTS[3]).write_text(json.dumps(verification, indent=1) + "\n")

def compare(new, ref, path, worst, bad, statistic=False):
    """Walks two JSON values: mismatches go to `bad`, the largest float differences to `worst`."""
    if isinstance(ref, dict) and isinstance(new, dict) and new.keys() == ref.keys():
        for k in ref: compare(new[k], ref[k], f"{path}.{k}", worst, bad, statistic or "max_abs_diff" in k)
    elif isinstance(ref, list) and isinstance(new, list) and len(new) == len(ref):
        for k, (a, b) in enumerate(zip(new, ref)): compare(a, b, f"{path}[{k}]", worst, bad, statistic)
    elif type(new) is float and type(ref) is float and statistic:  # an agreement bound: must stay small
        worst["agreement statistic"] = max(worst.get("agreement statistic", (0.0, "")), (new, path))
        if new > BOUND: bad.append(f"{path}: {new} > {BOUND} (committed {ref})")
    elif type(new) is float and type(ref) is float:
        worst["abs diff"] = max(worst.get("abs diff", (0.0, "")), (abs(new - ref), path))
        worst["rel diff"] = max(worst.get("rel diff", (0.0, "")), (abs(new - ref) / max(abs(ref), 1e-30), path))
        if abs(new - ref) > ATOL + RTOL * abs(ref): bad.append(f"{path}: {new} vs committed {ref}")
    elif new != ref or type(new) is not type(ref):
        (worst.setdefault("notes", []) if ".versions." in path else bad).append(f"{path}: {str(new)[:80]} vs committed {str(ref)[:80]}")

def check(new_dir, ref_dir):
    failed = False
    for name in OUTPUTS:
        a, b, worst, bad = new_dir / name, ref_dir / name, {}, []
        if a.read_bytes() == b.read_bytes():
            print(f"{name}: OK, byte-identical")
            continue
        if name.endswith(".json"):
            compare(json.loads(a.read_text()), json.loads(b.read_text()), "$", worst, bad)
        else:
            with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
                if fa.metadata() != fb.metadata() or sorted(fa.keys()) != sorted(fb.keys()):
                    bad.append(f"metadata or keys differ: {fa.metadata()} {sorted(fa.keys())}")
                for k in set(fa.keys()) & set(fb.keys()):
                    compare(fa.get_tensor(k).tolist(), fb.get_tensor(k).tolist(), k, worst, bad)
        failed |= bool(bad)
        summary = ", ".join(f"max {kind} {v[0]:.3g} at {v[1]}" for kind, v in worst.items() if kind != "notes" and v[0])
        print(f"{name}: {'MISMATCH' if bad else 'OK'} ({summary or 'floats equal'})")
        for line in worst.get("notes", []): print(f"  note, not compared: {line}")
        for line in bad[:20]: print(f"  {line}")
        if len(bad) > 20: print(f"  ... and {len(bad) - 20} more")
    print(f"--check {'FAILED' if failed else 'passed'}: ids, texts, structure exact; floats |a-b| <= {ATOL} + {RTOL}*|b|; "
          f"agreement statistics <= {BOUND}")
    return 1 if failed else 0

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("Tests/Fixtures/tiny-dsv2.5"), help="model directory (%(default)s)")
    ap.add_argument("--out", type=Path, help="output directory; with --check, keeps the regenerated files there")
    ap.add_argument("--prompts", type=Path, help="JSON whose `prompts` give the inputs (default: MODEL/reference.json)")
    ap.add_argument("--check", action="store_true", help="regenerate and compare with MODEL's committed references")
    args = ap.parse_args()
    if args.out and args.out.resolve() == args.model.resolve():
        ap.error("--out must not be the model directory (--check compares with its references)")
    if not args.out and not args.check:
        ap.error("give --out DIR or --check")
    prompts = args.prompts or args.model / "reference.json"
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.model, args.out or Path(tmp), prompts)
        if args.check:
            sys.exit(check(args.out or Path(tmp), args.model))
    print(f"wrote {', '.join(OUTPUTS)} to {args.out}")
