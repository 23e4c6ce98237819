#!/usr/bin/env python3
"""HF tokenizers on one thread, one document at a time (encode, not encode_batch): MB/s of UTF-8."""
import json, os, sys, time
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer
t0 = time.perf_counter()
tok = Tokenizer.from_file(sys.argv[1])
load = time.perf_counter() - t0
docs = [json.loads(l) for l in open(sys.argv[2])]
size = sum(len(d.encode()) for d in docs)
t0 = time.perf_counter()
encoded = [tok.encode(d, add_special_tokens=False).ids for d in docs]
s = time.perf_counter() - t0
n = sum(len(e) for e in encoded)
# An order-sensitive checksum of every id, to compare with dsconv-bench tokenize.
h = 0
for e in encoded:
    for i in e: h = (h * 1000003 + i + 1) % (1 << 61)
print(json.dumps({"load_seconds": load, "bytes": size, "tokens": n, "mb_per_s": size / s / 1e6, "checksum": h}))
