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
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from training.cli import ConfigError, HelpFormatter, build_parser, load_preset
from training.config import RunConfig
from training.optim.flops import card_peak_flops
from training.planning.memory_plan import (
    DEFAULT_MFU,
    GIB,
    PRECISIONS,
    Shape,
    card_memory,
    describe,
    diagnostic_weight_copies,
    plan_run,
)

PLAN_OPTIONS = ("--accelerate_config", "--num_processes", "--card", "--card_memory_gb", "--mfu", "--json")
# accelerate's distributed types the planner models; the others (DEEPSPEED, XLA, MEGATRON_LM, other accelerators)
# are refused by name rather than planned as something they are not.
PLANNED_LAYOUTS = ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP")
FSDP1_STRATEGIES = {"FULL_SHARD": True, "1": True, "SHARD_GRAD_OP": False, "2": False}  # -> reshard after forward


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


@dataclass
class Layout:
    """What the accelerate config (and --num_processes) decide: processes, sharding, precision, device."""

    processes: int = 1
    sharded: bool = False
    precision: str | None = None
    device: str | None = None  # "cpu" when the config says so
    checkpointing: bool = False  # fsdp_activation_checkpointing
    reshard_after_forward: bool = True
    notes: list[str] = field(default_factory=list)


def _positive_int(value, key: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}: {key} must be a positive integer (got {value!r}).")
    return value


def _precision(value, where: str) -> str | None:
    """accelerate's mixed_precision: no | bf16 | fp16 (YAML reads an unquoted `no` as false)."""
    if value is None:
        return None
    if value is False:
        return "no"
    if value == "fp8":
        raise ConfigError(f"{where} fp8: the planner does not model fp8 training (its weight copies and saved "
                          "activations depend on the fp8 backend); --mixed_precision bf16 gives an estimate (fp8 "
                          "recipes keep most saved activations in bf16).")
    if value not in PRECISIONS:
        raise ConfigError(f"{where} {value!r}: must be one of {', '.join(PRECISIONS)}.")
    return value


def _flag(value, key: str, path: Path) -> bool:
    """A boolean as accelerate reads it (true/false, or the strings it turns into booleans)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{path}: {key} must be true or false (got {value!r}).")


def read_accelerate_config(path: Path, processes_given: bool = False) -> Layout:
    """The accelerate config, checked key by key: every problem is an error naming the file and the key.
    ``processes_given``: --num_processes overrides the config's count (which may then be absent)."""
    from accelerate.utils import DistributedType

    if not path.is_file():
        raise ConfigError(f"--accelerate_config {path} does not exist (or is not a file).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"--accelerate_config {path} is not valid YAML{where}: {problem}.") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--accelerate_config {path} cannot be read: {error}") from error
    if not isinstance(raw, dict):
        what = "it is empty" if raw is None else f"not a {type(raw).__name__}"
        raise ConfigError(f"--accelerate_config {path} must hold a mapping of accelerate settings (distributed_type, "
                          f"num_processes, mixed_precision, ...): {what}; see configs/accelerate/ddp-8gpu.yaml.")
    known = [member.value for member in DistributedType]
    kind = raw.get("distributed_type")
    kind = "NO" if kind is False else kind  # YAML reads an unquoted NO as false
    if kind is None:
        raise ConfigError(f"{path}: distributed_type is missing (accelerate requires it: NO, MULTI_GPU, FSDP, ...).")
    if kind not in known:
        raise ConfigError(f"{path}: distributed_type {kind!r} is not one accelerate knows ({', '.join(known)}).")
    if kind not in PLANNED_LAYOUTS:
        raise ConfigError(f"{path}: distributed_type {kind}: the planner models {', '.join(PLANNED_LAYOUTS)} only "
                          "(this project trains with DDP or FSDP2).")
    if "num_processes" not in raw and kind != "NO" and not processes_given:
        raise ConfigError(f"{path}: num_processes is missing (accelerate launch would start one process per visible "
                          "GPU); set it, or pass --num_processes.")
    machines = _positive_int(raw.get("num_machines", 1), "num_machines", path)
    processes = _positive_int(raw.get("num_processes", 1), "num_processes", path)
    if processes % machines:
        raise ConfigError(f"{path}: num_processes ({processes}) counts the processes of all machines and must be a "
                          f"multiple of num_machines ({machines}).")
    if kind == "NO" and processes > 1:
        raise ConfigError(f"{path}: distributed_type NO launches one process, but num_processes is {processes}; use "
                          "MULTI_GPU for DDP or FSDP for sharding.")
    layout = Layout(processes=processes, precision=_precision(raw.get("mixed_precision"), f"{path}: mixed_precision"))
    use_cpu = _flag(raw.get("use_cpu", False), "use_cpu", path)
    if use_cpu or kind == "MULTI_CPU":
        layout.device = "cpu"
    if kind == "FSDP":
        read_fsdp_config(raw.get("fsdp_config") or {}, path, layout)
        if layout.device == "cpu":
            layout.sharded = False
            layout.notes.append(f"{path}: FSDP on CPU: accelerate falls back to DDP (planned as DDP).")
    return layout


def read_fsdp_config(fsdp: dict, path: Path, layout: Layout) -> None:
    if not isinstance(fsdp, dict):
        raise ConfigError(f"{path}: fsdp_config must be a mapping (got a {type(fsdp).__name__}).")
    version = fsdp.get("fsdp_version", 1)  # accelerate's default when the key is absent
    if version not in (1, 2) or isinstance(version, bool):
        raise ConfigError(f"{path}: fsdp_config.fsdp_version must be 1 or 2 (got {version!r}).")
    if _flag(fsdp.get("fsdp_offload_params", False), "fsdp_config.fsdp_offload_params", path):
        raise ConfigError(f"{path}: fsdp_config.fsdp_offload_params true: the planner does not model CPU offload "
                          "(parameters, gradients and optimizer state in host memory).")
    if version == 2:
        reshard = fsdp.get("fsdp_reshard_after_forward", True)
        if isinstance(reshard, int) and not isinstance(reshard, bool):
            raise ConfigError(f"{path}: fsdp_config.fsdp_reshard_after_forward {reshard}: resharding to a smaller "
                              "group is not planned; use true or false.")
        layout.reshard_after_forward = _flag(reshard, "fsdp_config.fsdp_reshard_after_forward", path)
    else:
        key = "fsdp_sharding_strategy" if "fsdp_sharding_strategy" in fsdp else "fsdp_reshard_after_forward"
        strategy = str(fsdp.get(key, "FULL_SHARD")).upper()
        if strategy not in FSDP1_STRATEGIES:
            raise ConfigError(f"{path}: fsdp_config.{key} {fsdp.get(key)!r}: the planner models FULL_SHARD and "
                              "SHARD_GRAD_OP (NO_SHARD and the HYBRID strategies are not planned).")
        layout.reshard_after_forward = FSDP1_STRATEGIES[strategy]
        layout.notes.append(f"{path}: fsdp_version 1 (accelerate's default when the key is absent) is planned like "
                            "FSDP2; this project is built and tested with FSDP2 (set fsdp_version: 2), and its "
                            "start-up memory check recognises only FSDP2's sharded parameters.")
    layout.checkpointing = _flag(fsdp.get("fsdp_activation_checkpointing", False),
                                 "fsdp_config.fsdp_activation_checkpointing", path)
    layout.sharded = True


def layout_of(values, config: RunConfig) -> Layout:
    """The layout from the accelerate config, --num_processes and the run's own --mixed_precision / --cpu."""
    layout = read_accelerate_config(Path(values.accelerate_config), values.num_processes is not None) \
        if values.accelerate_config else Layout()
    if values.num_processes is not None:
        layout.processes = values.num_processes
    run_precision = _precision(config.train.mixed_precision, "--mixed_precision")
    layout.precision = run_precision or layout.precision or "no"
    if config.train.cpu:
        layout.device = "cpu"
    if layout.processes == 1:
        layout.sharded = False  # one process holds everything: nothing to shard (or bucket)
    return layout


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


def local_card() -> tuple[str | None, int | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory


def build_shape(config: RunConfig, layout: Layout, arch=None) -> Shape:
    train, model = config.train, config.model
    accumulation = train.grad_accum_steps(layout.processes)
    return Shape(n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd, vocab_size=model.vocab_size,
                 seq_len=train.seq_len, micro_batch_size=train.micro_batch_size, grad_accum=accumulation,
                 num_processes=layout.processes, mixed_precision=layout.precision, sharded=layout.sharded,
                 checkpointing=model.gradient_checkpointing or layout.checkpointing, optimizer=config.optimizer.optimizer,
                 device=layout.device or "cuda", attn_implementation=model.attn_implementation,
                 dropout=model.dropout, qk_norm=model.qk_norm, bias=model.bias, z_loss=config.optimizer.z_loss > 0,
                 n_inner=getattr(arch, "n_inner", None), n_positions=getattr(arch, "n_positions", None),
                 reshard_after_forward=layout.reshard_after_forward,
                 weight_copies=diagnostic_weight_copies(train.callbacks, config.logging.diagnostics_every,
                                                        config.logging.histogram_every))


def main(argv=None) -> int:
    try:
        values, config = parse(argv)
        layout = layout_of(values, config)
        check_attention(config.model.attn_implementation)
        shape = build_shape(config, layout, initial_architecture(config))
        card, memory = values.card, None
        if card and shape.device == "cpu":
            raise ConfigError(f"--card {card!r} with a CPU run (--cpu, or the accelerate config's use_cpu / "
                              "MULTI_CPU): it uses no card. Plan it for a card with --cpu false, or compare with the "
                              "host memory per process with --card_memory_gb.")
        if values.card_memory_gb is not None:
            memory = int(values.card_memory_gb * GIB)
            card = f"{card} ({values.card_memory_gb:g} GiB)" if card else f"a {values.card_memory_gb:g} GiB card"
        elif card:
            memory = card_memory(card)
            if memory is None:
                raise ConfigError(f"--card {card!r}: its memory is not in the table (training/planning/memory_plan.py); "
                                  "pass --card_memory_gb.")
        elif shape.device == "cuda":
            card, memory = local_card()
        found = card_peak_flops(card) if card and shape.device == "cuda" else None
        peak = config.logging.peak_flops or (found[1] if found else None)
        plan = plan_run(shape, memory, card, config.train.total_batch_tokens, peak, values.mfu)
        plan.notes += layout.notes
        if config.train.compile:
            plan.notes.append("--compile: torch.compile's own workspace is not planned (compiled graphs usually keep "
                              "less than eager mode: they free intermediates earlier).")
        if shape.device == "cpu" and memory is not None:
            plan.notes.append("a CPU run: the verdict compares its peak with the memory given, less the 1 GiB kept "
                              "for a CUDA context it will not have.")
    except (ConfigError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if values.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(describe(plan))
    return 0 if plan.fits is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
