"""Typed run configuration: model, data, training and logging arguments (one dataclass each).

Parsed by transformers' ``HfArgumentParser`` from a YAML preset plus command-line overrides
(``training.cli.parse_run_config``); every field's ``help`` is what ``--help`` prints. Hardware (number of GPUs,
mixed precision, DDP/FSDP) lives in ``accelerate_config.yaml``, not here.
"""

import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from .errors import ConfigError  # noqa: F401  (re-exported: raised by the validation below)

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def _help(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


def _allowed_types(annotation) -> tuple[tuple[type, ...], bool]:
    """The classes a field accepts and whether it accepts None (``int | None`` -> ((int,), True))."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = typing.get_args(annotation)
        return tuple(m for m in members if m is not type(None)), type(None) in members
    return (typing.get_origin(annotation) or annotation,), False


def coerce_value(name: str, value, annotation) -> tuple[Any, str | None]:
    """``value`` made to fit the field's type, or a problem. Values from YAML presets and sweep files reach the
    dataclasses without argparse's conversion: ``max_steps: 3.7`` must not run 4 steps, ``max_lr: 3e-3`` (a
    string to YAML 1.1) is a number, and an empty ``max_lr:`` is a missing value, not None."""
    allowed, optional = _allowed_types(annotation)
    if value is None:
        return value, None if optional else f"{name} has no value (an empty entry in a preset?); give one"
    if bool in allowed:
        return (value, None) if isinstance(value, bool) else (value, f"{name} must be true or false (got {value!r})")
    if int in allowed and float not in allowed:
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        return value, f"{name} must be a whole number (got {value!r})"
    if float in allowed:
        if isinstance(value, str):
            try:
                return float(value), None
            except ValueError:
                return value, f"{name} must be a number (got {value!r})"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return value, f"{name} must be a finite number (got {value!r})"
            return float(value), None
        return value, f"{name} must be a number (got {value!r})"
    if str in allowed and not isinstance(value, str):
        return value, f"{name} must be a string (got {value!r})"
    if list in allowed and not isinstance(value, list):
        return value, f"{name} must be a list (got {value!r})"
    return value, None


def check_types(instance) -> list[str]:
    """Coerce every field of a dataclass instance to its declared type where that is lossless; the problems."""
    problems = []
    # The class's annotations, not ``Field.type``: transformers' HfArgumentParser rewrites ``Field.type`` in place
    # (``str | None`` becomes ``str``) when it builds a parser.
    hints = typing.get_type_hints(type(instance))
    for item in fields(instance):
        value, problem = coerce_value(item.name, getattr(instance, item.name), hints[item.name])
        if problem:
            problems.append(problem)
        else:
            setattr(instance, item.name, value)
    return problems


def raise_problems(what: str, problems: list[str]) -> None:
    if problems:
        raise ValueError(f"Invalid {what}: " + "; ".join(problems) + ".")


@dataclass
class ModelArguments:
    """The network. Defaults are GPT-2 124M with the padded 50304 vocabulary."""

    n_layer: int = _help("Transformer blocks.", default=12)
    n_head: int = _help("Attention heads per block (must divide n_embd).", default=12)
    n_embd: int = _help("Width of the residual stream.", default=768)
    vocab_size: int = _help("Embedding rows; >= 50257 for the GPT-2 tokenizer (50304 pads to a multiple of 128).",
                            default=50304)
    dropout: float = _help("Dropout on embeddings, attention and residual branches (0 for pretraining).",
                           default=0.0)
    bias: bool = _help("Biases in Linear layers and LayerNorms, as in GPT-2.", default=True)
    attn_implementation: str = _help("Attention kernel: sdpa (default), eager, or any name registered in "
                                     "transformers' ALL_ATTENTION_FUNCTIONS.", default="sdpa")
    init_std: float = _help("Std of the N(0, std) weight init (GPT-2: 0.02); residual projections use "
                            "std / sqrt(2 * n_layer).", default=0.02)
    init_from: str | None = _help("Start from weights instead of random init: a checkpoint folder of ours, or a "
                                  "GPT-2 Hub id/folder such as 'gpt2' (converted, vocab padded).", default=None)
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass (less memory, about 30 percent "
                                         "slower).", default=False)
    qk_norm: bool = _help("LayerNorm on each head's queries and keys (Wortsman et al. 2023): attention logits stay "
                          "bounded, so higher learning rates hold. Off is GPT-2 exactly; cannot change on resume.",
                          default=False)

    def __post_init__(self):
        raise_problems("model arguments", check_types(self))
        problems = [f"{name} must be positive (got {getattr(self, name)})"
                    for name in ("n_layer", "n_head", "n_embd", "vocab_size", "init_std") if getattr(self, name) <= 0]
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        raise_problems("model arguments", problems)
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head}).")
        if self.attn_implementation.startswith("paged"):
            # transformers' paged kernels apply no causal mask (and no dropout) without a paged cache: training
            # with one would let every position see the future, silently.
            raise ValueError(f"attn_implementation {self.attn_implementation!r} is for paged-cache generation and "
                             "applies no causal mask in training; use sdpa (default) or eager.")


@dataclass
class DataArguments:
    """Where tokens come from."""

    data: str | None = _help(
        "Training data: a folder of token shards (scripts/prepare_data.py), or a corpus (.txt/.jsonl/.json/"
        ".parquet file or folder) that is tokenized into <output_dir>/data on the fly.", default=None)
    download_url: str | None = _help(
        "When no --data is given, download this text corpus (cpu-tiny: tiny shakespeare) and use it.", default=None)
    text_field: str = _help("Text field of JSON records / parquet column when preparing on the fly.",
                            default="text")
    val_tokens: int = _help("Tokens of the validation shard made when preparing on the fly.", default=100_000)
    shard_tokens: int = _help("Tokens per shard made when preparing on the fly.", default=10_000_000)
    shuffle: bool = _help("Permute shard order and documents within shards every epoch (from data_seed).",
                          default=False)
    data_seed: int = _help("Seed of the shuffling.", default=1337)

    def __post_init__(self):
        problems = check_types(self)
        if not problems:
            problems += [f"{name} must be positive (got {getattr(self, name)})"
                         for name in ("val_tokens", "shard_tokens") if getattr(self, name) <= 0]
        raise_problems("data arguments", problems)


@dataclass
class TrainArguments:
    """Optimisation, schedule and what happens every N steps."""

    output_dir: str = _help("Run directory: checkpoints, TensorBoard logs, resolved config, final model. A fresh "
                            "run refuses a folder that holds another run (see --overwrite_output_dir).",
                            default="runs/gpt2")
    overwrite_output_dir: bool = _help("Start a fresh run in an --output_dir that holds another run, removing that "
                                       "run's checkpoints, final model, logs and analysis (prepared data is kept).",
                                       default=False)
    seq_len: int = _help("Context length T (also the model's n_positions).", default=1024)
    micro_batch_size: int = _help("Sequences per forward pass per process (B).", default=16)
    total_batch_tokens: int = _help(
        "Tokens per optimizer step over all processes; gradient accumulation = total_batch_tokens / "
        "(micro_batch_size * seq_len * num_processes), which must divide exactly.", default=524_288)
    max_steps: int = _help("Optimizer steps to run.", default=19_073)
    max_lr: float = _help("Peak learning rate, reached after warmup. On resume the schedule follows the current "
                          "value (the change is printed and recorded).", default=6e-4)
    min_lr: float = _help("Final learning rate of the decay.", default=6e-5)
    warmup_steps: int = _help("Linear warmup steps (from max_lr/warmup_steps up to max_lr).", default=715)
    lr_schedule: str = _help("cosine (build-nanogpt: warmup, then half a cosine to min_lr at max_steps) or wsd "
                             "(warmup-stable-decay, Hagele et al. 2024: warmup, max_lr held, then a cool-down over the "
                             "last --decay_fraction of the steps; a stable-phase checkpoint can be extended or cooled "
                             "down with scripts/cooldown.py).", default="cosine")
    decay_fraction: float = _help("With --lr_schedule wsd: the fraction of max_steps spent cooling down.",
                                  default=0.2)
    decay_steps: int | None = _help("With --lr_schedule wsd: cool-down steps (overrides --decay_fraction).",
                                    default=None)
    decay_shape: str = _help("Shape of the wsd cool-down and of --cooldown_steps: 1-sqrt (Hagele et al.'s best), "
                             "linear or cosine.", default="1-sqrt")
    cooldown_steps: int | None = _help("With --resume_from_checkpoint: cool down from the resumed step over this "
                                       "many steps (max_steps becomes that step + N; with another --output_dir the "
                                       "cool-down is a branch that records where it came from). scripts/cooldown.py "
                                       "does this in one command.", default=None)
    weight_decay: float = _help("AdamW weight decay, applied to parameters with dim >= 2 only.", default=0.1)
    optimizer: str = _help("adamw, or muon: torch.optim.Muon for the hidden 2-D weight matrices (scaled to AdamW's "
                           "update RMS) and AdamW for embeddings, the tied head, biases and gains.", default="adamw")
    muon_lr: float | None = _help("With --optimizer muon: peak learning rate of the Muon group (default: max_lr); "
                                  "it follows the same warmup + cosine shape down to min_lr/max_lr of it.",
                                  default=None)
    muon_momentum: float = _help("With --optimizer muon: Muon's (Nesterov) momentum.", default=0.95)
    z_loss: float = _help("Weight of PaLM's auxiliary z-loss, weight * log^2 Z of the softmax normaliser (e.g. "
                          "1e-4); logged as train/z_loss, train/loss stays the cross-entropy, validation is plain "
                          "cross-entropy. 0 disables it.", default=0.0)
    adam_beta1: float = _help("AdamW beta1.", default=0.9)
    adam_beta2: float = _help("AdamW beta2.", default=0.95)
    adam_epsilon: float = _help("AdamW epsilon.", default=1e-8)
    grad_clip: float = _help("Clip the global gradient norm to this value (0 disables clipping).", default=1.0)
    seed: int = _help("Seed for model init and every random number generator.", default=1337)
    compile: bool = _help("torch.compile the training forward (evaluation and generation use the eager model).",
                          default=False)
    mixed_precision: str | None = _help("no | bf16 | fp16; default: what accelerate launch / its config says.",
                                        default=None)
    cpu: bool = _help("Train on CPU even when a GPU is present (multi-process CPU runs use gloo).", default=False)
    check_memory: bool = _help("On a GPU, plan the run's peak memory before the first step (scripts/plan.py's "
                               "estimate) and refuse to start, naming the numbers and the fix, when it will not fit. "
                               "false tries anyway.", default=True)
    eval_every: int = _help("Validation loss every N steps (and at the end); 0 disables.", default=250)
    eval_tokens: int = _help("Validation tokens per evaluation (the same tokens every time).", default=10_485_760)
    hellaswag_every: int = _help("HellaSwag accuracy every N steps; 0 disables.", default=0)
    hellaswag_path: str | None = _help("Local hellaswag_val.jsonl; downloaded when empty and online.", default=None)
    hellaswag_limit: int | None = _help("Evaluate only the first N HellaSwag examples.", default=None)
    sample_every: int = _help("Generate text samples every N steps (logged to TensorBoard); 0 disables.",
                              default=250)
    sample_prompt: str = _help("Prompt of the text samples.", default="Hello, I'm a language model,")
    sample_tokens: int = _help("New tokens per text sample.", default=32)
    num_samples: int = _help("Text samples per sampling step.", default=4)
    save_every: int = _help("Checkpoint every N steps (and at the end); 0 saves only at the end.", default=1000)
    keep_last: int = _help("Checkpoints kept (older ones are deleted); 0 keeps all.", default=3)
    resume_from_checkpoint: str | None = _help("'latest' (newest in <output_dir>/checkpoints) or a checkpoint path.",
                                               default=None)
    target_val_loss: float | None = _help("Stop once the validation loss is at or below this value.", default=None)
    on_nonfinite: str = _help("A NaN/inf loss or gradient norm: 'stop' (keep the last good checkpoint) or 'skip' "
                              "the update and continue (bounded by max_consecutive_skips and max_skipped_updates).",
                              default="stop")
    max_consecutive_skips: int = _help("Stop the run (keeping the last good checkpoint) after this many skipped updates "
                                       "in a row: NaN/inf with --on_nonfinite skip, or spikes skipped by the "
                                       "spike_detector. A run that keeps skipping is not training.", default=5)
    max_skipped_updates: int = _help("Stop the run after this many skipped updates in total.", default=100)
    spike_guard: bool = _help(
        "Survive loss spikes (opt-in): a step whose loss (or gradient norm) stands --spike_guard_z robust standard "
        "deviations above the run's recent band has its update skipped; if the loss stays above the band for "
        "--spike_guard_patience steps, the run rolls back to the last checkpoint before the spike and skips the "
        "data that followed it (PaLM's practice); after --spike_guard_rollbacks rollbacks it stops, naming every "
        "step taken. Every intervention is logged (interventions.jsonl, TensorBoard) and reported.", default=False)
    spike_guard_z: float = _help("Spike guard: robust z-score (median and MAD of the trailing window) above which a "
                                 "step is a spike.", default=6.0)
    spike_guard_window: int = _help("Spike guard: trailing steps that define the band.", default=100)
    spike_guard_patience: int = _help("Spike guard: consecutive steps above the band (updates skipped) before a "
                                      "rollback; at most --max_consecutive_skips.", default=3)
    spike_guard_rollbacks: int = _help("Spike guard: rollbacks allowed before the run stops (a cause that "
                                       "survives them is not a bad data window).", default=3)
    spike_guard_skip_steps: int = _help("Spike guard: after a rollback, the data resumes this many steps' worth "
                                        "of batches after the first spiking step.", default=20)
    callbacks: list[str] = _help(
        "Callbacks by name, with arguments as name:key=value,key=value (e.g. spike_detector:z_threshold=4). "
        "Built in: grad_norm, layer_ratios, histograms, spike_detector, early_stopping.",
        default_factory=lambda: ["grad_norm", "layer_ratios"])
    push_to_hub: str | None = _help("Hub repo id (user/name) to push the final model to (token from HF_TOKEN or "
                                    "`hf auth login`, checked before training starts).", default=None)
    push_checkpoints: bool = _help("With --push_to_hub, also push every checkpoint to a branch step_N, in the "
                                   "background.", default=False)
    hub_private: bool = _help("Create the Hub repository as private.", default=False)
    # transformers.TrainingArguments names that HF callbacks read (EarlyStoppingCallback and friends).
    metric_for_best_model: str = _help("Metric HF-style callbacks track (eval_loss = validation loss).",
                                       default="eval_loss")
    greater_is_better: bool = _help("Whether a larger metric_for_best_model is better.", default=False)
    load_best_model_at_end: bool = _help("Kept for HF callbacks; this trainer always ends with the last weights.",
                                         default=False)

    def __post_init__(self):
        raise_problems("training arguments", check_types(self))
        problems = []
        if self.max_lr <= 0:
            problems.append(f"max_lr must be positive (got {self.max_lr})")
        if self.min_lr < 0:
            problems.append(f"min_lr must be >= 0 (got {self.min_lr})")
        if self.min_lr > self.max_lr:
            problems.append(f"min_lr ({self.min_lr}) is larger than max_lr ({self.max_lr})")
        if self.muon_lr is not None and self.muon_lr <= 0:
            problems.append(f"muon_lr must be positive (got {self.muon_lr})")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0 (got {self.warmup_steps})")
        for name in ("weight_decay", "grad_clip", "z_loss"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)}; 0 disables it)")
        for name in ("adam_beta1", "adam_beta2", "muon_momentum"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if self.adam_epsilon <= 0:
            problems.append(f"adam_epsilon must be positive (got {self.adam_epsilon})")
        if self.lr_schedule not in ("cosine", "wsd"):
            problems.append(f"lr_schedule must be 'cosine' or 'wsd' (got {self.lr_schedule!r})")
        if self.decay_shape not in ("1-sqrt", "linear", "cosine"):
            problems.append(f"decay_shape must be '1-sqrt', 'linear' or 'cosine' (got {self.decay_shape!r})")
        if not 0 <= self.decay_fraction <= 1:
            problems.append(f"decay_fraction must be in [0, 1] (got {self.decay_fraction})")
        if self.decay_steps is not None and not 0 <= self.decay_steps <= self.max_steps:
            problems.append(f"decay_steps must be in [0, max_steps={self.max_steps}] (got {self.decay_steps})")
        if self.cooldown_steps is not None and self.cooldown_steps <= 0:
            problems.append(f"cooldown_steps must be positive (got {self.cooldown_steps})")
        if self.cooldown_steps and not self.resume_from_checkpoint:
            problems.append("cooldown_steps needs --resume_from_checkpoint (the checkpoint to cool down from; "
                            "scripts/cooldown.py CHECKPOINT --steps N does both)")
        if self.overwrite_output_dir and self.resume_from_checkpoint == "latest":
            problems.append("overwrite_output_dir and resume_from_checkpoint latest contradict each other: resume "
                            "the run, or overwrite it")
        for name in ("seq_len", "micro_batch_size", "total_batch_tokens", "max_steps", "max_consecutive_skips",
                     "max_skipped_updates"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive (got {getattr(self, name)})")
        for name in ("eval_every", "eval_tokens", "sample_every", "sample_tokens", "num_samples", "save_every",
                     "keep_last", "hellaswag_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.eval_every > 0 and self.eval_tokens < self.seq_len:
            problems.append(f"eval_tokens ({self.eval_tokens}) must be at least seq_len ({self.seq_len}) when "
                            "eval_every > 0 (or set eval_every 0 to disable validation)")
        if self.sample_every > 0 and (self.num_samples < 1 or self.sample_tokens < 1):
            problems.append(f"sampling every {self.sample_every} steps needs num_samples >= 1 and sample_tokens >= 1 "
                            "(or set sample_every 0)")
        if self.spike_guard:
            for name in ("spike_guard_window", "spike_guard_patience", "spike_guard_rollbacks"):
                if getattr(self, name) <= 0:
                    problems.append(f"{name} must be positive (got {getattr(self, name)})")
            if self.spike_guard_z <= 0 or self.spike_guard_skip_steps < 0:
                problems.append("spike_guard_z must be positive and spike_guard_skip_steps >= 0")
            if self.spike_guard_patience > self.max_consecutive_skips:
                problems.append(f"spike_guard_patience ({self.spike_guard_patience}) exceeds max_consecutive_skips "
                                f"({self.max_consecutive_skips}): the run would stop before the guard rolls back")
            if self.save_every == 0:
                problems.append("spike_guard rolls back to checkpoints: set --save_every N (every few hundred steps)")
        if self.optimizer not in ("adamw", "muon"):
            problems.append(f"optimizer must be 'adamw' or 'muon' (got {self.optimizer!r})")
        if self.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
            problems.append("optimizer 'muon' needs torch.optim.Muon (torch >= 2.9)")
        if self.optimizer != "muon" and self.muon_lr is not None:
            problems.append(f"muon_lr ({self.muon_lr}) is set but the optimizer is {self.optimizer!r}: it would have "
                            "no effect; drop it or pass --optimizer muon")
        if self.target_val_loss is not None and self.eval_every == 0:
            problems.append(f"target_val_loss ({self.target_val_loss}) needs validation to be measured: set "
                            "--eval_every N (or drop the target)")
        if self.mixed_precision is not None and self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"--mixed_precision must be no, bf16 or fp16 (got {self.mixed_precision!r}; fp8 is not "
                            "supported by this trainer)")
        if self.on_nonfinite not in ("stop", "skip"):
            problems.append(f"on_nonfinite must be 'stop' or 'skip' (got {self.on_nonfinite!r})")
        if problems:
            raise ValueError("Invalid training arguments: " + "; ".join(problems) + ".")

    def grad_accum_steps(self, num_processes: int) -> int:
        per_micro_step = self.micro_batch_size * self.seq_len * num_processes
        if self.total_batch_tokens % per_micro_step:
            raise ValueError(
                f"total_batch_tokens ({self.total_batch_tokens}) is not divisible by micro_batch_size "
                f"({self.micro_batch_size}) x seq_len ({self.seq_len}) x num_processes ({num_processes}) = "
                f"{per_micro_step}; change one of them (e.g. total_batch_tokens="
                f"{max(1, round(self.total_batch_tokens / per_micro_step)) * per_micro_step})."
            )
        return self.total_batch_tokens // per_micro_step

    # HF TrainingArguments-compatible views, for callbacks written against the HF Trainer.
    @property
    def eval_strategy(self) -> str:
        return "steps" if self.eval_every else "no"

    @property
    def eval_steps(self) -> int:
        return self.eval_every

    @property
    def save_steps(self) -> int:
        return self.save_every


@dataclass
class LoggingArguments:
    """What goes to TensorBoard and how often."""

    log_every: int = _help("Log train scalars every N steps.", default=1)
    diagnostics_every: int = _help("Per-layer gradient / weight / update statistics every N steps (0 disables).",
                                   default=25)
    histogram_every: int = _help("Weight, gradient and update histograms every N steps (with the 'histograms' "
                                 "callback).", default=250)
    peak_flops: float | None = _help("Peak FLOP/s of one device for MFU; default: looked up for known GPUs "
                                     "(A100/H100/H200 bf16), none on CPU.", default=None)
    progress_bar: bool = _help("Show a tqdm progress bar on the main process.", default=True)
    run_name: str | None = _help("Name shown in TensorBoard (default: the output_dir's name).", default=None)

    def __post_init__(self):
        problems = check_types(self)
        if not problems:
            problems += [f"{name} must be >= 0 (got {getattr(self, name)})"
                         for name in ("diagnostics_every", "histogram_every") if getattr(self, name) < 0]
            if self.log_every <= 0:
                problems.append(f"log_every must be positive (got {self.log_every})")
            if self.peak_flops is not None and self.peak_flops <= 0:
                problems.append(f"peak_flops must be positive (got {self.peak_flops})")
        raise_problems("logging arguments", problems)


@dataclass
class RunConfig:
    """All arguments of one run."""

    model: ModelArguments
    data: DataArguments
    train: TrainArguments
    logging: LoggingArguments

    def to_dict(self) -> dict:
        return {"model": asdict(self.model), "data": asdict(self.data), "train": asdict(self.train),
                "logging": asdict(self.logging)}

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


ARGUMENT_CLASSES = (ModelArguments, DataArguments, TrainArguments, LoggingArguments)
