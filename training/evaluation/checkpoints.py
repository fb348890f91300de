"""Loading any GPT-2-family checkpoint (ours, OpenAI's ``gpt2``, a local folder) with clear errors, and what a
checkpoint of ours says about its training."""

import json
import os
import re

from ..data.download import hub_unreachable_reason
from ..errors import UserError
from ..layout import TRAINING_STATE_FILE


class CheckpointError(UserError):
    """A checkpoint that cannot be evaluated; the message names the path and the problem."""


SUPPORTED_MODEL_TYPES = ("nanogpt", "gpt2")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_hub_id(spec: str) -> bool:
    """``gpt2`` or ``openai-community/gpt2`` that is not also a local path."""
    return not os.path.exists(os.path.expanduser(spec)) and bool(_HUB_ID.match(spec))


def require_checkpoint(spec: str) -> None:
    """A local checkpoint path must exist (Hub ids are checked when fetched)."""
    if not is_hub_id(spec) and not os.path.exists(os.path.expanduser(spec)):
        raise CheckpointError(f"Checkpoint {spec} does not exist.")


def load_causal_lm(spec: str, device="cpu", dtype=None):
    """``AutoModelForCausalLM.from_pretrained`` for our checkpoints and GPT-2-family models (Hub ids or folders),
    with clear errors for a missing path, unreadable weights or another architecture."""
    from transformers import AutoConfig, AutoModelForCausalLM

    import modeling  # noqa: F401  (registers model_type "nanogpt" with the Auto classes)

    require_checkpoint(spec)
    path = os.path.expanduser(spec)
    require_reachable(spec)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        where = "not a local folder, and fetching it from the Hub failed" if is_hub_id(spec) else \
            "no readable config.json"
        raise CheckpointError(f"{spec}: {where} ({error}).") from error
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(f"{spec} holds a {config.model_type!r} model; this tool evaluates GPT-2-family "
                              f"causal LMs (model_type {' or '.join(SUPPORTED_MODEL_TYPES)}).")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as error:  # safetensors/torch raise several types for truncated or corrupt files
        raise CheckpointError(f"{spec}: could not read the weights ({type(error).__name__}: {error}); the file may "
                              "be truncated or corrupted: copy it again or pick another checkpoint.") from error
    return model.to(device).eval()


def require_reachable(spec: str) -> None:
    """A Hub id must be in the local cache or the Hub reachable; checked at once, not after the client's retries."""
    if is_hub_id(spec) and not _in_local_cache(spec) and (reason := hub_unreachable_reason()):
        raise CheckpointError(f"{spec} is a Hub model id, but {reason} and it is not in the local Hugging Face "
                              "cache. Pass a local folder instead (a saved copy of the model, e.g. made with "
                              "save_pretrained on a machine with internet), or copy that machine's cache (HF_HOME).")


def _in_local_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def training_facts(spec: str) -> dict:
    """What a checkpoint folder of ours says about its training (empty for other models)."""
    path = os.path.join(os.path.expanduser(spec), TRAINING_STATE_FILE)
    return json.load(open(path)) if os.path.exists(path) else {}
