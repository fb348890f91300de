#!/usr/bin/env python
"""Will a run fit? The per-process peak memory of a training run, term by term, before it launches: parameters,
gradients, optimizer state (AdamW or Muon), DDP buckets or FSDP2 sharding, activations per block (with and without
checkpointing), the 50304-wide logits and their loss, temporaries; against a card: whether it fits, the largest
micro-batch that does and the accumulation that keeps the total batch, and the tokens/s at a stated MFU.

It takes pretrain.py's own arguments (a preset, overrides) and the accelerate config the run is meant for.

Examples:
    python scripts/plan.py --config configs/gpt2-350m.yaml --accelerate_config configs/accelerate/ddp-8gpu.yaml \\
        --card "H100 80GB"
    python scripts/plan.py --config configs/gpt2-1558m.yaml --accelerate_config configs/accelerate/fsdp.yaml \\
        --card "A100 40GB"
    python scripts/plan.py --config configs/cpu-tiny.yaml --n_layer 6 --micro_batch_size 4 --json
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

from training.cli import ConfigError, HelpFormatter, build_parser, load_preset
from training.loop.arguments import RunConfig
from training.loop.memory_plan import DEFAULT_MFU, GIB, Shape, card_memory, describe, plan_run
from training.loop.optimization import card_peak_flops

PLAN_OPTIONS = ("--accelerate_config", "--num_processes", "--card", "--card_memory_gb", "--mfu", "--json")


def parse(argv):
    planning = argparse.ArgumentParser(add_help=False)
    planning.add_argument("--accelerate_config", default=None,
                          help="The accelerate config the run is meant for (processes, DDP or FSDP, precision).")
    planning.add_argument("--num_processes", type=int, default=None, help="Override the config's process count.")
    planning.add_argument("--card", default=None, help="A card by name, e.g. 'H100 80GB', 'A100 40GB', 'L4' "
                          "(default: the local GPU, if any).")
    planning.add_argument("--card_memory_gb", type=float, default=None, help="The card's memory in GiB (for a "
                          "card the table does not know).")
    planning.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="MFU assumed for the tokens/s estimate.")
    planning.add_argument("--json", action="store_true", help="Print the plan as JSON (peak_bytes: the per-process "
                          "peak).")
    parser = build_parser(__doc__)
    for action in planning._actions:
        parser._add_action(action)
    parser.formatter_class = HelpFormatter
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_preset(known.config))
    values = parser.parse_args(argv)
    run_fields = {k: v for k, v in vars(values).items()
                  if k not in ("config", "accelerate_config", "num_processes", "card", "card_memory_gb", "mfu", "json")}
    from training.cli import run_config_from_values

    return values, run_config_from_values(run_fields)


def layout_of(values, config: RunConfig) -> tuple[int, bool, str]:
    """(processes, sharded, mixed precision) from the accelerate config and the run's own --mixed_precision."""
    accelerate = {}
    if values.accelerate_config:
        path = Path(values.accelerate_config)
        if not path.is_file():
            raise ConfigError(f"--accelerate_config {path} does not exist.")
        accelerate = yaml.safe_load(path.read_text()) or {}
    processes = values.num_processes or int(accelerate.get("num_processes", 1)) * int(accelerate.get("num_machines", 1))
    sharded = accelerate.get("distributed_type") == "FSDP"
    precision = config.train.mixed_precision or accelerate.get("mixed_precision") or "no"
    return processes, sharded, precision


def local_card() -> tuple[str | None, int | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory


def main(argv=None) -> int:
    try:
        values, config = parse(argv)
        processes, sharded, precision = layout_of(values, config)
        train, model = config.train, config.model
        accumulation = train.grad_accum_steps(processes)
        shape = Shape(n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd, vocab_size=model.vocab_size,
                      seq_len=train.seq_len, micro_batch_size=train.micro_batch_size, grad_accum=accumulation,
                      num_processes=processes, mixed_precision=precision, sharded=sharded,
                      checkpointing=model.gradient_checkpointing, optimizer=train.optimizer,
                      device="cpu" if train.cpu else "cuda")
        card, memory = values.card, None
        if values.card_memory_gb:
            memory = int(values.card_memory_gb * GIB)
        elif card:
            memory = card_memory(card)
            if memory is None:
                raise ConfigError(f"--card {card!r}: its memory is not in the table (training/loop/memory_plan.py); "
                                  "pass --card_memory_gb.")
        else:
            card, memory = local_card()
        peak = config.logging.peak_flops or (card_peak_flops(card)[1] if card and card_peak_flops(card) else None)
        plan = plan_run(shape, memory, card, train.total_batch_tokens, peak, values.mfu)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if values.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(describe(plan))
    return 0 if plan.fits is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
