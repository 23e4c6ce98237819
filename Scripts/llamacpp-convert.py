"""Runs llama.cpp's own convert_hf_to_gguf.py on a DeepSeek-V2.5 checkpoint (Scripts/bench-llamacpp).

Usage: llamacpp-convert.py LLAMA_CPP_DIR MODEL_DIR [converter arguments...]

The converter identifies a BPE pre-tokenizer by hashing the token ids of a probe text; under
current transformers the DeepSeek-V2.5 tokenizer's hash is not in its table, though its
pre-tokenizer is the one llama.cpp calls `deepseek-llm`. This names it and runs the converter
unchanged otherwise.
"""
import runpy
import sys
from pathlib import Path

llama = Path(sys.argv[1])
sys.path.insert(0, str(llama))
sys.path.insert(1, str(llama / "gguf-py"))
from conversion import base  # noqa: E402  (llama.cpp's module, imported from its tree)

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-llm"
sys.argv = [str(llama / "convert_hf_to_gguf.py"), *sys.argv[2:]]
runpy.run_path(str(llama / "convert_hf_to_gguf.py"), run_name="__main__")
