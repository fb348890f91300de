"""μP's coordinate check (Yang et al. 2022, "Tensor Programs V", section on checking correctness; Microsoft mup's
``get_coord_data``): train models that differ only in width for a few steps at one fixed learning rate, then measure
the RMS of every layer's output. Under a correct μP the curves are flat in width (each layer's update moves its
output by the same amount at every width); under the standard parametrization the logits (and with them the
residual stream's updates) grow with width, which is why the best learning rate shrinks as models widen.

``bench/mup_coord_check.py`` prints the table and the plot over widths 64 -> 1024; ``tests/test_mup.py`` runs small
widths. The model and its optimizer groups are the training run's own (``build_optimizers``), so the check tests
what a run trains with.
"""

from dataclasses import dataclass

import torch

from modeling import GPTConfig, GPTForCausalLM

from ..optim.config import OptimizerArguments
from ..optim.optimizers import build_optimizers, group_peak


@dataclass
class CoordCheckSetup:
    """What the models share: everything but the width. ``base_width`` is mup_base_width (ignored under sp)."""

    n_layer: int = 2
    n_head: int = 4
    vocab_size: int = 256
    seq_len: int = 32
    batch_size: int = 8
    steps: int = 5
    lr: float = 1e-2
    optimizer: str = "adamw"
    base_width: int = 64
    seed: int = 0


def layer_names(n_layer: int) -> list[str]:
    """The measured outputs in forward order: embeddings, each block's attention and MLP branch, the logits."""
    return ["embeddings", *[f"h.{i}.{part}" for i in range(n_layer) for part in ("attn", "mlp")], "logits"]


def build_model(width: int, parametrization: str, setup: CoordCheckSetup) -> GPTForCausalLM:
    config = GPTConfig(vocab_size=setup.vocab_size, n_positions=setup.seq_len, n_embd=width, n_layer=setup.n_layer,
                       n_head=setup.n_head, parametrization=parametrization, attn_implementation="eager",
                       mup_base_width=setup.base_width if parametrization == "mup" else None,
                       bos_token_id=None, eos_token_id=None)
    return GPTForCausalLM(config)


def build_fixed_lr_optimizers(model: GPTForCausalLM, setup: CoordCheckSetup) -> list[torch.optim.Optimizer]:
    """The run's optimizers at a constant learning rate (each group at its μP-scaled share of it), no weight decay:
    the check is about the parametrization, not the schedule or the regulariser."""
    args = OptimizerArguments(optimizer=setup.optimizer, max_lr=setup.lr, min_lr=0.0, weight_decay=0.0)
    optimizers = build_optimizers(model, args)
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group_peak(group, setup.lr)
    return optimizers


def output_rms(model: GPTForCausalLM, tokens: torch.Tensor) -> dict[str, float]:
    """RMS of each layer's output (``layer_names``) on ``tokens``, read by forward hooks."""
    blocks = model.transformer.h
    modules = {"embeddings": model.transformer.drop, **{f"h.{i}.attn": b.attn for i, b in enumerate(blocks)},
               **{f"h.{i}.mlp": b.mlp for i, b in enumerate(blocks)}}
    found: dict[str, float] = {}

    def recorder(name):
        return lambda module, inputs, output: found.__setitem__(name, output.detach().pow(2).mean().sqrt().item())

    handles = [module.register_forward_hook(recorder(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            logits = model(tokens, use_cache=False).logits  # (B, T, V)
    finally:
        for handle in handles:
            handle.remove()
    found["logits"] = logits.pow(2).mean().sqrt().item()
    return {name: found[name] for name in layer_names(len(blocks))}


def train_and_measure(width: int, parametrization: str, setup: CoordCheckSetup) -> dict[str, float]:
    """Output RMS of one width after ``setup.steps`` steps on random tokens. The seed fixes the tokens (the same
    batches at every width) and the init; the measurement batch is a separate, fixed one."""
    torch.manual_seed(setup.seed)
    model = build_model(width, parametrization, setup).train()
    optimizers = build_fixed_lr_optimizers(model, setup)
    data = torch.Generator().manual_seed(setup.seed + 1)
    shape = (setup.batch_size, setup.seq_len)
    probe = torch.randint(0, setup.vocab_size, shape, generator=data)
    for _ in range(setup.steps):
        tokens = torch.randint(0, setup.vocab_size, (setup.batch_size, setup.seq_len + 1), generator=data)
        loss = model(tokens[:, :-1], shift_labels=tokens[:, 1:], use_cache=False).loss
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return output_rms(model.eval(), probe)


def coord_check(widths: list[int], parametrization: str, setup: CoordCheckSetup | None = None,
                seeds: list[int] | None = None) -> dict[int, dict[str, float]]:
    """width -> layer -> output RMS after training, averaged over ``seeds`` (default: the setup's one seed)."""
    setup = setup or CoordCheckSetup()
    seeds = seeds or [setup.seed]
    results = {}
    for width in widths:
        runs = [train_and_measure(width, parametrization, _with_seed(setup, seed)) for seed in seeds]
        results[width] = {name: sum(run[name] for run in runs) / len(runs) for name in runs[0]}
    return results


def growth(results: dict[int, dict[str, float]], layer: str) -> float:
    """How much a layer's output RMS grew from the smallest width to the largest (1 = flat)."""
    widths = sorted(results)
    return results[widths[-1]][layer] / results[widths[0]][layer]


def _with_seed(setup: CoordCheckSetup, seed: int) -> CoordCheckSetup:
    return CoordCheckSetup(**{**setup.__dict__, "seed": seed})
