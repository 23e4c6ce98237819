# Stand-in for the modeling_deepseek.py of real DeepSeek-V2/V2.5 repositories (named by auto_map).
# dsconv's tests check that every writer carries it byte for byte; it is never run.
raise ImportError("a dsconv test stand-in, not DeepSeek's model code")
