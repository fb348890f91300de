"""Evaluation: validation loss (exactly averaged over processes), text samples from ``generate``, and loading
any GPT-2-family checkpoint (ours, OpenAI's ``gpt2``, a local folder) for comparison."""

import json
import math
import os
import re

import torch
import torch.nn.functional as F

from modeling.tokenization import GPT2Tokenizer

from .data import ValidationSet


@torch.no_grad()
def validation_loss(model, val_set: ValidationSet, batch_size: int, seq_len: int, device: torch.device,
                    process_index: int = 0, num_processes: int = 1, max_tokens: int | None = None,
                    reduce=None, autocast=None) -> dict:
    """Mean next-token loss over the fixed validation tokens; every token counted once across processes.

    Each process sums loss x tokens over its share of the batches; ``reduce`` (e.g. ``accelerator.reduce``) adds
    the sums, so the result does not depend on the number of processes.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of token losses, tokens]
    for x, y in val_set.batches(batch_size, seq_len, process_index, num_processes, max_tokens):
        x, y = x.to(device), y.to(device)
        with autocast() if autocast is not None else torch.autocast(device.type, enabled=False):
            logits = model(x).logits  # (B, T, V); any causal LM (ours, GPT2LMHeadModel) works
        totals[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        totals[1] += y.numel()
    if reduce is not None:
        totals = reduce(totals, "sum")
    model.train(was_training)
    loss = (totals[0] / totals[1]).item()
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)), "eval_tokens": int(totals[1].item())}


@torch.no_grad()
def generate_samples(model, tokenizer: GPT2Tokenizer, prompt: str, num_samples: int = 4, max_new_tokens: int = 32,
                     top_k: int = 50, seed: int = 42, temperature: float = 1.0) -> list[str]:
    """Top-k samples continuing ``prompt``. Uses its own seeded RNG, so sampling during training leaves the
    training RNG (and therefore an exact resume) untouched."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)] * num_samples, device=device)
    vocab = model.config.vocab_size
    # Padded ids (50257..50303) have no text; never sample them.
    suppress = list(range(tokenizer.vocab_size, vocab)) or None
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=top_k,
                             temperature=temperature, max_new_tokens=max_new_tokens, suppress_tokens=suppress,
                             pad_token_id=tokenizer.eot_token_id)
    model.train(was_training)
    return [tokenizer.decode(row.tolist()) for row in out]


class CheckpointError(ValueError):
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
    import modeling  # noqa: F401  (registers model_type "nanogpt" with the Auto classes)
    from transformers import AutoConfig, AutoModelForCausalLM

    require_checkpoint(spec)
    path = os.path.expanduser(spec)
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


def training_facts(spec: str) -> dict:
    """What a checkpoint folder of ours says about its training (empty for other models)."""
    path = os.path.join(os.path.expanduser(spec), "training_state.json")
    return json.load(open(path)) if os.path.exists(path) else {}
