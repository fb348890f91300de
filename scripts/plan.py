#!/usr/bin/env python
"""Will a run fit? The per-process peak memory of a training run, term by term, before it launches: parameters,
gradients, optimizer state (AdamW or Muon), DDP buckets or FSDP2 sharding, activations per block (with and without
checkpointing; the attention kernel's T x T matrices under eager attention), the 50304-wide logits and their loss,
temporaries; against a card: whether it fits, the largest micro-batch that does and the accumulation that keeps the
total batch, and the tokens/s at a stated MFU.

It takes pretrain.py's own arguments (a preset, overrides) and the accelerate config the run is meant for.
Exit codes: 0 fits (or no card to compare with), 1 does not fit, 2 an input it cannot plan.

Examples:
    python scripts/plan.py --config configs/gpt2-350m.yaml --accelerate_config configs/accelerate/ddp-8gpu.yaml \\
        --card "H100 80GB"
    python scripts/plan.py --config configs/gpt2-1558m.yaml --accelerate_config configs/accelerate/fsdp.yaml \\
        --card "A100 40GB"
    python scripts/plan.py --config configs/cpu-tiny.yaml --n_layer 6 --micro_batch_size 4 --json
"""

import argparse
import json
import math

from training.cli import ConfigError, HelpFormatter, build_parser, load_preset
from training.config import RunConfig
from training.errors import script_main
from training.optim.flops import card_peak_flops
from training.planning.launch import build_shape, layout_of, local_card
from training.planning.memory_plan import (
    DEFAULT_MFU,
    GIB,
    card_memory,
    describe,
    plan_run,
)

PLAN_OPTIONS = ("--accelerate_config", "--num_processes", "--card", "--card_memory_gb", "--mfu", "--json")


def parse(argv):
    planning = argparse.ArgumentParser(add_help=False)
    planning.add_argument("--accelerate_config", default=None,
                          help="The accelerate config the run is meant for (processes, DDP or FSDP, precision).")
    planning.add_argument("--num_processes", type=int, default=None, help="Override the config's process count "
                          "(all machines together, as accelerate counts them).")
    planning.add_argument("--card", default=None, help="A card by name, e.g. 'H100 80GB', 'A100 40GB', 'L4' "
                          "(default: the local GPU, if any).")
    planning.add_argument("--card_memory_gb", type=float, default=None, help="The card's memory in GiB (for a "
                          "card the table does not know; overrides the table's size for --card).")
    planning.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="MFU assumed for the tokens/s estimate, a "
                          "fraction in (0, 1].")
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
    check_plan_options(values)
    run_fields = {k: v for k, v in vars(values).items()
                  if k not in ("config", "accelerate_config", "num_processes", "card", "card_memory_gb", "mfu", "json")}
    from training.cli import run_config_from_values

    return values, run_config_from_values(run_fields)


def check_plan_options(values) -> None:
    """The planner's own options: numbers that mean something (argparse only checks that they parse)."""
    if values.num_processes is not None and values.num_processes < 1:
        raise ConfigError(f"--num_processes {values.num_processes}: a run has at least one process.")
    if values.card_memory_gb is not None and not (math.isfinite(values.card_memory_gb) and values.card_memory_gb > 1):
        raise ConfigError(f"--card_memory_gb {values.card_memory_gb:g}: the card's memory in GiB, more than the 1 GiB "
                          "the planner keeps for the CUDA context (e.g. 80 for an H100 80GB).")
    if not (math.isfinite(values.mfu) and 0 < values.mfu <= 1):
        raise ConfigError(f"--mfu {values.mfu:g}: MFU is a fraction of the card's peak in (0, 1] (0.40 means 40%).")
    if values.card is not None and not values.card.strip():
        raise ConfigError("--card is empty: name a card such as 'H100 80GB', or pass --card_memory_gb.")


def check_attention(name: str) -> None:
    """The kernel must be one the model accepts (pretrain.py would stop at the model's construction otherwise)."""
    import torch

    from modeling import GPTConfig, GPTForCausalLM

    with torch.device("meta"):
        model = GPTForCausalLM(GPTConfig(n_layer=1, n_head=1, n_embd=8, n_positions=8))
    try:
        model.set_attn_implementation(name)
    except (ValueError, ImportError) as error:
        raise ConfigError(f"--attn_implementation {name!r}: {str(error).splitlines()[0]}") from error


def initial_architecture(config: RunConfig):
    """With --init_from, the weights' own config (a local folder or a cached Hub id), checked against the run's
    settings as pretrain.py checks them; None without --init_from."""
    source = config.model.init_from
    if not source:
        return None
    from types import SimpleNamespace

    from transformers import AutoConfig

    from modeling import GPTConfig
    from modeling.weight_conversion import PADDED_VOCAB_SIZE, config_from_gpt2
    from training.trainer.builders import check_initial_architecture

    try:
        found = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--init_from {source}: no readable config.json there and not a reachable Hub id "
                          f"({type(error).__name__}; offline, a cached Hub model needs HF_HUB_OFFLINE=1); the planner "
                          "reads the architecture from it.") from error
    arch = found if found.model_type == GPTConfig.model_type else config_from_gpt2(found, PADDED_VOCAB_SIZE)
    check_initial_architecture(SimpleNamespace(config=arch), config)
    return arch


def card_to_compare(values, shape) -> tuple[str | None, int | None]:
    """The card and its memory: --card (its memory from the table, or --card_memory_gb), else the local GPU."""
    card = values.card
    if card and shape.device == "cpu":
        raise ConfigError(f"--card {card!r} with a CPU run (--cpu, or the accelerate config's use_cpu / "
                          "MULTI_CPU): it uses no card. Plan it for a card with --cpu false, or compare with the "
                          "host memory per process with --card_memory_gb.")
    if values.card_memory_gb is not None:
        memory = int(values.card_memory_gb * GIB)
        return (f"{card} ({values.card_memory_gb:g} GiB)" if card else f"a {values.card_memory_gb:g} GiB card"), memory
    if card:
        memory = card_memory(card)
        if memory is None:
            raise ConfigError(f"--card {card!r}: its memory is not in the table (training/planning/memory_plan.py); "
                              "pass --card_memory_gb.")
        return card, memory
    return local_card() if shape.device == "cuda" else (None, None)


def plan_notes(config, shape, layout, memory) -> list[str]:
    """What the plan leaves out or assumes, beside the layout's own notes."""
    notes = list(layout.notes)
    if config.train.compile:
        notes.append("--compile: torch.compile's own workspace is not planned (compiled graphs usually keep "
                     "less than eager mode: they free intermediates earlier).")
    if shape.device == "cpu" and memory is not None:
        notes.append("a CPU run: the verdict compares its peak with the memory given, less the 1 GiB kept "
                     "for a CUDA context it will not have.")
    return notes


@script_main
def main(argv=None) -> int:
    values, config = parse(argv)
    layout = layout_of(values, config)
    check_attention(config.model.attn_implementation)
    shape = build_shape(config, layout, initial_architecture(config))
    card, memory = card_to_compare(values, shape)
    found = card_peak_flops(card) if card and shape.device == "cuda" else None
    peak = config.logging.peak_flops or (found[1] if found else None)
    plan = plan_run(shape, memory, card, config.train.total_batch_tokens, peak, values.mfu)
    plan.notes += plan_notes(config, shape, layout, memory)
    print(json.dumps(plan.to_dict(), indent=2) if values.json else describe(plan))
    return 0 if plan.fits is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
