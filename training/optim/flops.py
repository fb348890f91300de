"""FLOPs per token and the cards' peaks: what MFU is measured against."""

import re

import torch


def model_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls of forward+backward plus attention's 12 * L * C * T
    (PaLM appendix B, as nanoGPT's estimate_mfu). N excludes the position table, which does no matmul."""
    config = model.config
    params = sum(p.numel() for p in model.parameters()) - config.n_positions * config.n_embd
    return 6 * params + 12 * config.n_layer * config.n_embd * seq_len


# Dense (no sparsity) bf16 tensor-core peaks per card, from NVIDIA's data sheets, matched against
# torch.cuda.get_device_name() in order: the first pattern that matches names the card. An H100 PCIe is not an H100
# SXM (756 vs 989 TFLOP/s): one name fragment per family would overstate MFU on the slower cards.
CARD_PEAK_BF16_FLOPS = (
    (r"H100.*PCIe", "H100 PCIe", 756e12),
    (r"H100.*NVL", "H100 NVL", 835e12),
    (r"H100", "H100 SXM", 989e12),
    (r"GH200", "GH200", 989e12),
    (r"H200.*NVL", "H200 NVL", 835e12),
    (r"H200", "H200 SXM", 989e12),
    (r"B200", "B200", 2250e12),
    (r"A100", "A100 (40/80 GB, SXM or PCIe)", 312e12),
    (r"A800", "A800", 312e12),
    (r"L40S", "L40S", 362e12),
    (r"L40\b", "L40", 181e12),
    (r"\bL4\b", "L4", 121e12),
    (r"RTX 4090", "GeForce RTX 4090", 165e12),
    (r"RTX A6000", "RTX A6000", 155e12),
    (r"\bA10\b", "A10", 125e12),
)


def card_peak_flops(device_name: str) -> tuple[str, float] | None:
    """(the card as this table names it, its dense bf16 peak in FLOP/s) for a CUDA device name, or None."""
    for pattern, card, flops in CARD_PEAK_BF16_FLOPS:
        if re.search(pattern, device_name):
            return card, flops
    return None


def device_peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the card (for MFU); None on CPU and for cards not in CARD_PEAK_BF16_FLOPS."""
    if device.type != "cuda":
        return None
    found = card_peak_flops(torch.cuda.get_device_name(device))
    return found[1] if found else None
