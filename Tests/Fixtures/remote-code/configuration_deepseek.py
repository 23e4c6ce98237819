# Stand-in for the configuration_deepseek.py that real DeepSeek-V2/V2.5 repositories ship and
# config.json's auto_map names (transformers / vLLM --trust-remote-code import it). dsconv's tests
# check that every writer carries it byte for byte; it is never run.
from transformers import PretrainedConfig


class DeepseekV2Config(PretrainedConfig):
    model_type = "deepseek_v2"
