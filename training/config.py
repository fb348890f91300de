"""A run's configuration, composed of each component's own section.

    model       ModelArguments       (here)                     the network
    data        DataArguments        training/data/config.py    where tokens come from
    train       TrainArguments       (here)                     the loop: batch, steps, precision, the run folder
    optimizer   OptimizerArguments   training/optim/config.py   AdamW / Muon, learning rates, clipping, z-loss
    schedule    ScheduleArguments    training/optim/config.py   the learning-rate schedule and cool-downs
    checkpoint  CheckpointArguments  training/run/config.py     saving, keeping, resuming, clearing a folder
    guards      GuardArguments       training/guards/config.py  non-finite steps, skipped updates, the spike guard
    evaluation  EvaluationArguments  training/evaluation/config.py  validation, HellaSwag, samples
    logging     LoggingArguments     (here)                     what is logged, how often, where to
    hub         HubArguments         training/hub/config.py     pushing to the Hugging Face Hub

A YAML preset has one mapping per section; ``--field value`` on the command line sets any field (field names are
unique across sections, so flags need no section). Presets and saved configurations of earlier versions, whose
``train`` section held the optimizer, schedule, checkpoint, guard, evaluation and hub fields too, are read with a
one-line note (``legacy_sections``). Each section checks itself in ``__post_init__``; ``RunConfig`` checks what
involves several. Hardware (number of GPUs, mixed precision, DDP/FSDP) lives in ``accelerate_config.yaml``.
"""

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from .config_fields import (
    check_types,
    described,
    non_negative,
    positive,
    raise_problems,
)
from .data.config import DataArguments
from .errors import ConfigError
from .evaluation.config import EvaluationArguments
from .guards.config import GuardArguments
from .hub.config import HubArguments
from .layout import TRACKER
from .optim.config import OptimizerArguments, ScheduleArguments
from .run.config import CheckpointArguments

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
# Accelerate's trackers (log_with=); TensorBoard's is the one the analysis reads back.
PARAMETRIZATIONS = ("sp", "mup")
TRACKERS = (TRACKER, "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")


@dataclass
class ModelArguments:
    """The network. Defaults are GPT-2 124M with the padded 50304 vocabulary."""

    n_layer: int = described("Transformer blocks.", default=12)
    n_head: int = described("Attention heads per block (must divide n_embd).", default=12)
    n_embd: int = described("Width of the residual stream.", default=768)
    vocab_size: int = described("Embedding rows; >= 50257 for the GPT-2 tokenizer (50304 pads to a multiple of "
                                "128).", default=50304)
    dropout: float = described("Dropout on embeddings, attention and residual branches (0 for pretraining).",
                               default=0.0)
    bias: bool = described("Biases in Linear layers and LayerNorms, as in GPT-2.", default=True)
    attn_implementation: str = described("Attention kernel: sdpa (default), eager, or any name registered in "
                                         "transformers' ALL_ATTENTION_FUNCTIONS.", default="sdpa")
    init_std: float = described("Std of the N(0, std) weight init (GPT-2: 0.02); residual projections use "
                                "std / sqrt(2 * n_layer).", default=0.02)
    init_from: str | None = described("Start from weights instead of random init: a checkpoint folder of ours, or a "
                                      "GPT-2 Hub id/folder such as 'gpt2' (converted, vocab padded).", default=None)
    gradient_checkpointing: bool = described("Recompute activations in the backward pass (less memory, about 30 "
                                             "percent slower).", default=False)
    qk_norm: bool = described("LayerNorm on each head's queries and keys (Wortsman et al. 2023): attention logits "
                              "stay bounded, so higher learning rates hold. Off is GPT-2 exactly; cannot change on "
                              "resume.", default=False)
    parametrization: str = described(
        "sp (GPT-2's standard parametrization) or mup (maximal-update parametrization, relative to "
        "--mup_base_width: hidden-matrix init std / sqrt(m), attention scale sqrt(base head dim) / head dim, logits "
        "x 1/m, hidden-matrix learning rate x 1/m under AdamW and x 1/sqrt(m) under Muon, m = n_embd / "
        "mup_base_width). See docs/mup.md. Cannot change on resume.", default="sp")
    mup_base_width: int | None = described(
        "With --parametrization mup: the width (n_embd) the hyperparameters were tuned at, with the same n_head "
        "(it must divide). Cannot change on resume.", default=None)

    def __post_init__(self):
        raise_problems("model arguments", check_types(self))
        problems = positive(self, "n_layer", "n_head", "n_embd", "vocab_size", "init_std")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        problems += self._parametrization_problems()
        raise_problems("model arguments", problems)
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head}).")
        if self.attn_implementation.startswith("paged"):
            # transformers' paged kernels apply no causal mask (and no dropout) without a paged cache: training
            # with one would let every position see the future, silently.
            raise ConfigError(f"attn_implementation {self.attn_implementation!r} is for paged-cache generation and "
                              "applies no causal mask in training; use sdpa (default) or eager.")


    def _parametrization_problems(self) -> list[str]:
        if self.parametrization not in PARAMETRIZATIONS:
            return [f"parametrization must be one of {', '.join(PARAMETRIZATIONS)} (got {self.parametrization!r})"]
        base = self.mup_base_width
        if self.parametrization == "sp":
            return [] if base is None else [
                (f"mup_base_width ({base}) is set (on the command line, or by the preset or checkpoint the run "
                 "starts from) but the parametrization is 'sp': it would have no effect; drop it or pass "
                 "--parametrization mup")]
        if base is None:
            return [("parametrization 'mup' needs --mup_base_width, the width the hyperparameters were tuned at "
                     f"(e.g. 256; --mup_base_width {self.n_embd} makes this model the base)")]
        if base <= 0 or base % self.n_head:
            return [(f"mup_base_width ({base}) must be a positive multiple of n_head ({self.n_head}): the base "
                     "model keeps the heads, each mup_base_width / n_head wide")]
        return []


@dataclass
class TrainArguments:
    """The loop: the batch, how many steps, precision and compilation, the run folder, extra callbacks."""

    output_dir: str = described("Run directory: checkpoints, TensorBoard logs, resolved config, final model. A fresh "
                                "run refuses a folder that holds another run (see --overwrite_output_dir).",
                                default="runs/gpt2")
    seq_len: int = described("Context length T (also the model's n_positions).", default=1024)
    micro_batch_size: int = described("Sequences per forward pass per process (B).", default=16)
    total_batch_tokens: int = described(
        "Tokens per optimizer step over all processes; gradient accumulation = total_batch_tokens / "
        "(micro_batch_size * seq_len * num_processes), which must divide exactly.", default=524_288)
    max_steps: int = described("Optimizer steps to run.", default=19_073)
    seed: int = described("Seed for model init and every random number generator.", default=1337)
    compile: bool = described("torch.compile the training forward (evaluation and generation use the eager model).",
                              default=False)
    mixed_precision: str | None = described("no | bf16 | fp16; default: what accelerate launch / its config says.",
                                            default=None)
    cpu: bool = described("Train on CPU even when a GPU is present (multi-process CPU runs use gloo).", default=False)
    check_memory: bool = described("On a GPU, plan the run's peak memory before the first step (scripts/plan.py's "
                                   "estimate) and refuse to start, naming the numbers and the fix, when it will not "
                                   "fit. false tries anyway.", default=True)
    target_val_loss: float | None = described("Stop once the validation loss is at or below this value.",
                                              default=None)
    callbacks: list[str] = described(
        "Callbacks by name, with arguments as name:key=value,key=value (e.g. spike_detector:z_threshold=4). "
        "Built in: grad_norm, layer_ratios, histograms, spike_detector, early_stopping.",
        default_factory=lambda: ["grad_norm", "layer_ratios"])
    # transformers.TrainingArguments names that HF callbacks read (EarlyStoppingCallback and friends).
    metric_for_best_model: str = described("Metric HF-style callbacks track (eval_loss = validation loss).",
                                           default="eval_loss")
    greater_is_better: bool = described("Whether a larger metric_for_best_model is better.", default=False)
    load_best_model_at_end: bool = described("Kept for HF callbacks; this trainer always ends with the last weights.",
                                             default=False)

    def __post_init__(self):
        raise_problems("training arguments", check_types(self))
        problems = positive(self, "seq_len", "micro_batch_size", "total_batch_tokens", "max_steps")
        if self.mixed_precision is not None and self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"--mixed_precision must be no, bf16 or fp16 (got {self.mixed_precision!r}; fp8 is not "
                            "supported by this trainer)")
        raise_problems("training arguments", problems)

    def grad_accum_steps(self, num_processes: int) -> int:
        per_micro_step = self.micro_batch_size * self.seq_len * num_processes
        if self.total_batch_tokens % per_micro_step:
            raise ConfigError(
                f"total_batch_tokens ({self.total_batch_tokens}) is not divisible by micro_batch_size "
                f"({self.micro_batch_size}) x seq_len ({self.seq_len}) x num_processes ({num_processes}) = "
                f"{per_micro_step}; change one of them (e.g. total_batch_tokens="
                f"{max(1, round(self.total_batch_tokens / per_micro_step)) * per_micro_step})."
            )
        return self.total_batch_tokens // per_micro_step


@dataclass
class LoggingArguments:
    """What is logged, how often, and where to."""

    log_every: int = described("Log train scalars every N steps (and print a line, when the output is not a "
                               "terminal).", default=1)
    diagnostics_every: int = described("Per-layer gradient / weight / update statistics and the gradient noise "
                                       "scale every N steps (0 disables).", default=25)
    histogram_every: int = described("Weight, gradient and update histograms every N steps (with the 'histograms' "
                                     "callback).", default=250)
    peak_flops: float | None = described("Peak FLOP/s of one device for MFU; default: looked up for known GPUs "
                                         "(A100/H100/H200 bf16), none on CPU.", default=None)
    progress_bar: bool = described("Show a tqdm progress bar on the main process (when the output is a terminal; "
                                   "otherwise plain log lines every --log_every steps).", default=True)
    run_name: str | None = described("Name shown in TensorBoard (default: the output_dir's name).", default=None)
    report_to: list[str] = described(
        f"Trackers that receive the run's scalars, through Accelerate: {', '.join(TRACKERS)} (tensorboard is "
        "always on: the analysis reads its event files).", default_factory=lambda: [TRACKER])

    def __post_init__(self):
        raise_problems("logging arguments", check_types(self))
        problems = non_negative(self, "diagnostics_every", "histogram_every") + positive(self, "log_every")
        if self.peak_flops is not None and self.peak_flops <= 0:
            problems.append(f"peak_flops must be positive (got {self.peak_flops})")
        unknown = [name for name in self.report_to if name not in TRACKERS]
        if unknown:
            problems.append(f"report_to {unknown}: unknown tracker(s); use {', '.join(TRACKERS)}")
        raise_problems("logging arguments", problems)


SECTIONS = {"model": ModelArguments, "data": DataArguments, "train": TrainArguments,
            "optimizer": OptimizerArguments, "schedule": ScheduleArguments, "checkpoint": CheckpointArguments,
            "guards": GuardArguments, "evaluation": EvaluationArguments, "logging": LoggingArguments,
            "hub": HubArguments}
ARGUMENT_CLASSES = tuple(SECTIONS.values())
SECTION_OF = {f.name: section for section, cls in SECTIONS.items() for f in fields(cls)}
# Before the components had their own sections, the ``train`` section held all of these.
LEGACY_TRAIN_SECTIONS = ("train", "optimizer", "schedule", "checkpoint", "guards", "evaluation", "hub")


def legacy_sections(raw: dict) -> tuple[dict, list[str]]:
    """A sectioned configuration of an earlier version (its ``train`` section held the fields now in optimizer,
    schedule, checkpoint, guards, evaluation and hub) as today's sections, and the fields that moved (for a one-line
    note). Fields in their own sections are left as they are; unknown names are left for the caller to refuse."""
    out, moved = {section: dict(values or {}) for section, values in raw.items()}, []
    for name in list(out.get("train", {})):
        section = SECTION_OF.get(name)
        if section and section != "train" and section in LEGACY_TRAIN_SECTIONS:
            out.setdefault(section, {})[name] = out["train"].pop(name)
            moved.append(f"{name} -> {section}")
    return out, moved


@dataclass
class RunConfig:
    """All arguments of one run, one section per component."""

    model: ModelArguments
    data: DataArguments
    train: TrainArguments
    optimizer: OptimizerArguments
    schedule: ScheduleArguments
    checkpoint: CheckpointArguments
    guards: GuardArguments
    evaluation: EvaluationArguments
    logging: LoggingArguments
    hub: HubArguments

    def __post_init__(self):
        """The checks that involve several sections."""
        train, schedule, evaluation = self.train, self.schedule, self.evaluation
        problems = []
        if schedule.decay_steps is not None and schedule.decay_steps > train.max_steps:
            problems.append(f"decay_steps must be in [0, max_steps={train.max_steps}] (got {schedule.decay_steps})")
        if schedule.cooldown_steps and not self.checkpoint.resume_from_checkpoint:
            problems.append("cooldown_steps needs --resume_from_checkpoint (the checkpoint to cool down from; "
                            "scripts/cooldown.py CHECKPOINT --steps N does both)")
        if evaluation.eval_every > 0 and evaluation.eval_tokens < train.seq_len:
            problems.append(f"eval_tokens ({evaluation.eval_tokens}) must be at least seq_len ({train.seq_len}) when "
                            "eval_every > 0 (or set eval_every 0 to disable validation)")
        if self.guards.spike_guard and self.checkpoint.save_every == 0:
            problems.append("spike_guard rolls back to checkpoints: set --save_every N (every few hundred steps)")
        if train.target_val_loss is not None and evaluation.eval_every == 0:
            problems.append(f"target_val_loss ({train.target_val_loss}) needs validation to be measured: set "
                            "--eval_every N (or drop the target)")
        raise_problems("arguments", problems)

    @classmethod
    def from_sections(cls, sections: dict) -> "RunConfig":
        """From dataclass instances by section name (what the parser returns)."""
        return cls(**{name: sections[name] for name in SECTIONS})

    @property
    def args(self) -> "RunArgs":
        """Every setting by its field name, read-only (see ``RunArgs``)."""
        return RunArgs(self)

    def sections(self) -> dict:
        return {name: getattr(self, name) for name in SECTIONS}

    def to_dict(self) -> dict:
        return {name: asdict(section) for name, section in self.sections().items()}

    def save(self, path: str | Path) -> None:
        """The resolved configuration as sectioned YAML (the format presets use)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def flat(self) -> dict:
        """Scalars only, for TensorBoard hparams."""
        out = {}
        for group, values in self.to_dict().items():
            for key, value in values.items():
                if isinstance(value, (int, float, str, bool)) and not (isinstance(value, float) and math.isnan(value)):
                    out[f"{group}/{key}"] = value
                elif value is not None:
                    out[f"{group}/{key}"] = str(value)
        return out


class RunArgs:
    """A run's settings by field name, read-only: what callbacks written against transformers' ``TrainingArguments``
    receive as ``args`` (with its names ``eval_strategy``, ``eval_steps``, ``save_steps``), and what parts of the loop
    that read several components' settings use. Changing a setting is its component's business, never a reader's."""

    def __init__(self, config: RunConfig):
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name: str):
        config = object.__getattribute__(self, "_config")
        section = SECTION_OF.get(name)
        if section is not None:
            return getattr(getattr(config, section), name)
        aliases = {"eval_strategy": lambda: "steps" if config.evaluation.eval_every else "no",
                   "eval_steps": lambda: config.evaluation.eval_every, "save_steps": lambda: config.checkpoint.save_every,
                   "grad_accum_steps": lambda: config.train.grad_accum_steps}
        if name in aliases:
            return aliases[name]()
        raise AttributeError(f"no setting named {name!r}")

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"settings are read-only here: {name} belongs to the {SECTION_OF.get(name, '?')} section")
