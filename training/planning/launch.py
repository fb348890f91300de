"""The run's launch layout as the memory planner needs it: what an accelerate config file (and --num_processes)
decide (processes, DDP or FSDP and its resharding, precision, device), read with errors that name the file and key;
and the planner's ``Shape`` of a run from its configuration and that layout. Used by ``scripts/plan.py``."""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import RunConfig
from ..errors import ConfigError
from .memory_plan import PRECISIONS, Shape, diagnostic_weight_copies

# accelerate's distributed types the planner models; the others (DEEPSPEED, XLA, MEGATRON_LM, other accelerators)
# are refused by name rather than planned as something they are not.
PLANNED_LAYOUTS = ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP")

FSDP1_STRATEGIES = {"FULL_SHARD": True, "1": True, "SHARD_GRAD_OP": False, "2": False}  # -> reshard after forward

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
                 checkpointing=model.gradient_checkpointing or layout.checkpointing,
                 optimizer=config.optimizer.optimizer,
                 device=layout.device or "cuda", attn_implementation=model.attn_implementation,
                 dropout=model.dropout, qk_norm=model.qk_norm, bias=model.bias, z_loss=config.optimizer.z_loss > 0,
                 n_inner=getattr(arch, "n_inner", None), n_positions=getattr(arch, "n_positions", None),
                 reshard_after_forward=layout.reshard_after_forward,
                 weight_copies=diagnostic_weight_copies(train.callbacks, config.logging.diagnostics_every,
                                                        config.logging.histogram_every))
