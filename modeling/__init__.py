"""GPT-2 as a first-class Transformers model: config, model, weight conversion, tokenizer.

Importing this package registers ``model_type="nanogpt"`` with ``AutoConfig`` / ``AutoModel`` /
``AutoModelForCausalLM``, and marks the classes for ``auto_map`` so ``save_pretrained`` writes a folder that
loads with ``trust_remote_code=True`` where this package is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_gpt import GPTConfig
from .modeling_gpt import GPTForCausalLM, GPTModel, GPTPreTrainedModel

AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)
AutoModel.register(GPTConfig, GPTModel, exist_ok=True)
AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)
GPTConfig.register_for_auto_class()
GPTModel.register_for_auto_class("AutoModel")
GPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["GPTConfig", "GPTForCausalLM", "GPTModel", "GPTPreTrainedModel"]
