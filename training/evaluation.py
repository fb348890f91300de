"""Evaluation: validation loss (exactly averaged over processes) and text samples from ``generate``."""

import math

import torch

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
            loss = model(x, shift_labels=y).loss
        totals[0] += loss.double() * y.numel()
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
