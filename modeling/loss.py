"""The next-token loss: one definition for training, validation and HellaSwag scoring.

This file imports only torch: ``save_pretrained`` copies it beside ``modeling_gpt.py``, which imports it.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean",
                    ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy of ``logits`` (..., V) against ``targets`` (...) at the same positions.

    Targets are already aligned with the logits that predict them (Karpathy-style (x, y) pairs: position t of
    ``logits`` scores ``targets[t]``); a target equal to ``ignore_index`` is not counted. The softmax is taken in
    float32 whatever the logits' dtype, so bf16 autocast does not change the loss's precision.

    Token weighting: ``"mean"`` averages over the counted targets of the whole batch (every token weighs the same,
    however the rows are padded); ``"sum"`` adds them (callers that average across batches or processes divide
    by their own token count); ``"none"`` returns one loss per position, 0 where ignored.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    flat_logits = logits.reshape(-1, logits.size(-1)).float()  # (N, V)
    flat_targets = targets.reshape(-1).to(flat_logits.device)  # (N,)
    losses = F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore_index, reduction="none")  # (N,)
    if reduction == "none":
        return losses.view(targets.shape)
    total = losses.sum()
    if reduction == "sum":
        return total
    return total / (flat_targets != ignore_index).sum().clamp(min=1)


def next_token_loss_with_z(logits: torch.Tensor, targets: torch.Tensor, weight: float,
                           ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy plus PaLM's z-loss ``weight * log^2 Z`` (Z the softmax normaliser), both averaged over the
    counted targets, from one log-sum-exp pass over the logits. Returns ``(cross-entropy + z term, z term)``."""
    flat_logits = logits.reshape(-1, logits.size(-1)).float()  # (N, V)
    flat_targets = targets.reshape(-1).to(flat_logits.device)  # (N,)
    counted = flat_targets != ignore_index
    log_z = torch.logsumexp(flat_logits, dim=-1)  # (N,)
    target_logit = flat_logits.gather(1, flat_targets.clamp(min=0).unsqueeze(1)).squeeze(1)  # (N,)
    count = counted.sum().clamp(min=1)
    cross_entropy = ((log_z - target_logit) * counted).sum() / count
    z_term = weight * (log_z.pow(2) * counted).sum() / count
    return cross_entropy + z_term, z_term


def shift_for_next_token(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """HF-style ``labels`` (the input ids themselves) -> targets aligned with the logits: position t predicts
    token t+1, and the last position, which has no next token, is ignored."""
    padding = torch.full_like(labels[..., :1], ignore_index)
    return torch.cat([labels[..., 1:], padding], dim=-1)  # (B, T)
