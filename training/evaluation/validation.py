"""Validation loss over fixed tokens, exactly averaged over processes."""

import math

import torch

from modeling.loss import next_token_loss

from ..data.loaders import ValidationSet


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
            logits = model(x, use_cache=False).logits  # (B, T, V); any causal LM (ours, GPT2LMHeadModel) works
        totals[0] += next_token_loss(logits, y, reduction="sum").double()
        totals[1] += y.numel()
    if reduce is not None:
        totals = reduce(totals, "sum")
    model.train(was_training)
    loss = (totals[0] / totals[1]).item()
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)), "eval_tokens": int(totals[1].item())}
