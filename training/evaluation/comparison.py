"""Side-by-side evaluation of several checkpoints on the same validation tokens and HellaSwag examples."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from modeling.tokenization import TiktokenGPT2

from ..config_fields import flatten
from ..data.loaders import ValidationSet
from ..errors import UserError
from ..layout import RUN_CONFIG_FILE, RunLayout, Tags, run_of_model_folder
from .checkpoints import load_causal_lm, require_checkpoint, require_reachable, training_facts
from .hellaswag import evaluate_hellaswag, load_examples
from .validation import validation_loss

DEFAULT_VAL_TOKENS = 1_048_576
DEFAULT_SEQ_LEN = 1024


@dataclass
class Precision:
    """How a model is run for evaluation: the dtype of its weights and the autocast dtype (None: no autocast)."""

    weights: torch.dtype
    autocast: torch.dtype | None = None

    def describe(self) -> str:
        name = str(self.weights).replace("torch.", "")
        return f"{name} weights" + (f", {str(self.autocast).replace('torch.', '')} autocast" if self.autocast else "")

    def context(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None)


@dataclass
class RunSettings:
    """How a run of ours measured its val/loss, and on which data, read from a checkpoint's run_config.yaml /
    training_state.json (all None for models that are not ours)."""

    eval_tokens: int | None = None
    seq_len: int | None = None
    mixed_precision: str | None = None
    data_dir: Path | None = None

    @classmethod
    def of(cls, checkpoint: str) -> "RunSettings":
        config_path = Path(checkpoint) / RUN_CONFIG_FILE
        if not config_path.exists():
            return cls()
        run = yaml.safe_load(config_path.read_text()) or {}
        train = flatten(run)
        return cls(eval_tokens=train.get("eval_tokens"), seq_len=train.get("seq_len"),
                   mixed_precision=training_facts(checkpoint).get("mixed_precision") or train.get("mixed_precision"),
                   data_dir=_validation_data(run))

    @property
    def known(self) -> bool:
        return self.seq_len is not None


def resolve_precision(dtype: str, run: RunSettings, device: torch.device) -> Precision:
    if dtype == "float32":
        return Precision(torch.float32)
    if dtype == "bfloat16":
        return Precision(torch.bfloat16)
    if run.known:  # as the run measured: float32 master weights under the run's autocast
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(run.mixed_precision or "no")
        return Precision(torch.float32, autocast)
    return Precision(torch.bfloat16 if device.type == "cuda" else torch.float32)


@dataclass
class EvalArguments:
    checkpoints: list[str] = field(metadata={"help": "Checkpoint folders (ours: runs/<run>/final or "
                                             "runs/<run>/checkpoints/step_N/model) or GPT-2-family Hub ids/folders."})
    reference: str | None = field(default=None, metadata={
        "help": "A reference model evaluated alongside, e.g. gpt2 (OpenAI's 124M) or a local GPT2LMHeadModel folder."})
    data: str | None = field(default=None, metadata={
        "help": "Folder with the validation shard (*_val_000000.npy); default: the data of the first checkpoint's "
                "run (its run_config.yaml)."})
    val_tokens: int | None = field(default=None, metadata={
        "help": "Validation tokens (the first ones of the shard). Default: the tokens the first checkpoint's run "
                "measured its val/loss on (its --eval_tokens), so numbers compare with the run's curve; "
                f"{DEFAULT_VAL_TOKENS:,} for other models."})
    seq_len: int | None = field(default=None, metadata={
        "help": "Sequence length of the validation batches (capped at each model's context). Default: the run's "
                f"seq_len; {DEFAULT_SEQ_LEN} for other models."})
    batch_size: int = field(default=8, metadata={"help": "Sequences (validation) / examples (HellaSwag) per batch."})
    hellaswag: str | None = field(default=None, metadata={
        "help": "hellaswag_val.jsonl (ctx/label/endings); downloaded when not given and online."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N HellaSwag examples."})
    skip_hellaswag: bool = field(default=False, metadata={"help": "Validation loss only."})
    output: str | None = field(default=None, metadata={
        "help": "Where to write the results as JSON. Default: the first checkpoint's run folder, "
                "<run>/analysis/eval_<final or step_N>.json; eval.json in the current folder for a Hub model."})
    log_reference_to: str | None = field(default=None, metadata={
        "help": "A run directory: record the reference's measured numbers there (reference_eval.json and the "
                "TensorBoard tag reference/val_loss) so analysis and plots use a measured line."})
    dtype: str = field(default="auto", metadata={
        "help": "auto: the run's precision policy (float32 weights, autocast with the run's mixed precision), "
                "for every model evaluated, the reference included; without a run of ours: bfloat16 weights on "
                "GPU, float32 on CPU. float32 / bfloat16: weights in that dtype, no autocast."})

    def __post_init__(self):
        problems = [f"--{name} must be positive (got {getattr(self, name)})"
                    for name in ("val_tokens", "seq_len", "batch_size")
                    if getattr(self, name) is not None and getattr(self, name) <= 0]
        if self.limit is not None and self.limit <= 0:
            problems.append(f"--limit must be positive (got {self.limit})")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            problems.append(f"--dtype must be auto, float32 or bfloat16 (got {self.dtype!r})")
        if problems:
            raise UserError("; ".join(problems) + ".")


def _validation_data(run: dict) -> Path | None:
    """The folder of shards a run of ours trained and validated on (its --data, or what it prepared from it)."""
    settings = flatten(run)
    data = settings.get("data")
    if data and Path(data).is_dir():
        return Path(data)
    if not settings.get("output_dir"):
        return None
    prepared = RunLayout(settings["output_dir"]).prepared_shards_dir
    return prepared if prepared.is_dir() else None


def evaluate_one(spec: str, label: str, args: EvalArguments, val_set: ValidationSet, examples, tokenizer,
                 accelerator, precision: Precision) -> dict:
    device = accelerator.device
    model = load_causal_lm(spec, device=device, dtype=precision.weights)
    context = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    seq_len = min(args.seq_len, context)
    autocast = lambda: precision.context(device)  # noqa: E731
    val = validation_loss(model, val_set, args.batch_size, seq_len, device, accelerator.process_index,
                          accelerator.num_processes, args.val_tokens, reduce=accelerator.reduce, autocast=autocast)
    row = {"name": label, "path": spec, "model_type": model.config.model_type,
           "parameters": sum(p.numel() for p in model.parameters()),
           "tokens_trained": training_facts(spec).get("tokens_seen"), "val_loss": val["eval_loss"],
           "perplexity": val["eval_perplexity"], "val_tokens": val["eval_tokens"], "seq_len": seq_len,
           "precision": precision.describe()}
    if examples:
        hs = evaluate_hellaswag(model, examples, tokenizer, device, batch_examples=args.batch_size,
                                process_index=accelerator.process_index, num_processes=accelerator.num_processes,
                                reduce=accelerator.reduce, autocast=autocast, progress=accelerator.is_main_process)
        row.update({"hellaswag_acc": hs["acc"], "hellaswag_acc_norm": hs["acc_norm"],
                    "hellaswag_examples": hs["examples"]})
    del model
    return row


def format_table(rows: list[dict]) -> str:
    columns = [("model", "name", "{}"), ("params", "parameters", "{:,}"), ("tokens trained", "tokens_trained",
               "{:,}"), ("val loss", "val_loss", "{:.4f}"), ("ppl", "perplexity", "{:.2f}"),
               ("hellaswag acc", "hellaswag_acc", "{:.4f}"), ("acc_norm", "hellaswag_acc_norm", "{:.4f}")]
    cells = [[title for title, _, _ in columns]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def record_reference(run_dir: str | Path, reference: dict) -> None:
    """Measured reference numbers into a run: JSON for analysis, a TensorBoard scalar for the plots."""
    layout = RunLayout(run_dir)
    layout.reference_eval_file.write_text(json.dumps(reference, indent=2) + "\n")
    writer = SummaryWriter(str(layout.tensorboard_dir))  # the run's own folder: one entry in TensorBoard
    writer.add_scalar(Tags.REFERENCE_VAL_LOSS, reference["val_loss"], 0)
    if reference.get("hellaswag_acc_norm") is not None:
        writer.add_scalar(Tags.REFERENCE_HELLASWAG_ACC_NORM, reference["hellaswag_acc_norm"], 0)
    writer.add_text(Tags.REFERENCE_MODEL, f"{reference['name']} ({reference['path']})", 0)
    writer.close()


def checkpoint_label(spec: str) -> str:
    """``runs/seed/final`` -> ``seed/final``; ``runs/seed/checkpoints/step_0000500/model`` -> ``seed/step_0000500``."""
    found = run_of_model_folder(spec)
    if found is None:
        return spec
    run, name = found
    return f"{run.root.name}/{name}"


def compare(args: EvalArguments, accelerator) -> dict:
    for spec in args.checkpoints + ([args.reference] if args.reference else []):  # fail before any work is done
        require_checkpoint(spec)
        require_reachable(spec)
    run = RunSettings.of(args.checkpoints[0])  # measure every model as the run measured its val/loss, on its data
    data_dir = args.data or run.data_dir
    if data_dir is None:
        raise UserError("No validation data: pass --data with a folder holding a *_val_000000.npy shard.")
    args.val_tokens = args.val_tokens or run.eval_tokens or DEFAULT_VAL_TOKENS
    args.seq_len = args.seq_len or run.seq_len or DEFAULT_SEQ_LEN
    precision = resolve_precision(args.dtype, run, accelerator.device)
    val_set = ValidationSet(data_dir, max_tokens=args.val_tokens)
    examples = None if args.skip_hellaswag else load_examples(args.hellaswag, args.limit)
    tokenizer = TiktokenGPT2()
    specs = [(spec, checkpoint_label(spec)) for spec in args.checkpoints]
    if args.reference:
        specs.append((args.reference, f"{args.reference} (reference)"))
    rows = [evaluate_one(spec, label, args, val_set, examples, tokenizer, accelerator, precision)
            for spec, label in specs]
    result = {"models": rows, "val_data": str(data_dir), "val_tokens": rows[0]["val_tokens"],
              "seq_len": rows[0]["seq_len"], "precision": precision.describe(),
              "measured_like_run": run.known and args.dtype == "auto",
              "hellaswag": None if examples is None else {"path": args.hellaswag, "examples": len(examples)}}
    if args.reference:
        result["reference"] = rows[-1]
    return result
