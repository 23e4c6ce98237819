#!/usr/bin/env python3
"""Builds a ~10 MB mixed corpus (code, prose, CJK) for the tokenizer benchmark, one document per
JSON line, from text that ships on a Debian machine with Python: the CPython standard library,
/usr/share/doc, and the CJK strings of Tests/Fixtures/tokenizer-cases.jsonl."""
import glob, json, os, sys, sysconfig

out, target = sys.argv[1], int(float(sys.argv[2]) * 1e6) if len(sys.argv) > 2 else 10_000_000
docs, size = [], 0
def add(text, cap):
    global size
    taken = 0
    for i in range(0, len(text), 4000):
        piece = text[i:i + 4000]
        docs.append(piece)
        n = len(piece.encode())
        size += n; taken += n
        if taken >= cap: return taken
    return taken
code = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
prose = sorted(p for p in glob.glob("/usr/share/doc/**/*", recursive=True) if os.path.isfile(p) and not p.endswith(".gz"))[:4000]
cases = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "tokenizer-cases.jsonl")
cjk = "\n".join(json.loads(l)["text"] for l in open(cases) if json.loads(l)["category"] in ("chinese", "japanese", "korean"))
got = 0
for p in code:
    if got >= target * 0.45: break
    got += add(open(p, errors="replace").read(), target)
got = 0
for p in prose:
    if got >= target * 0.4: break
    try: got += add(open(p, errors="strict").read(), target)
    except (UnicodeDecodeError, OSError): pass
while size < target: add(cjk, target - size)
with open(out, "w") as f:
    for d in docs: f.write(json.dumps(d, ensure_ascii=False) + "\n")
print(f"{len(docs)} documents, {size / 1e6:.1f} MB")
