"""Construction of a run's parts, one small function each: accelerator, model, data, callbacks."""

from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration

from modeling import GPTConfig, GPTForCausalLM
from modeling.tokenization import check_vocab_fits

from ..config import ConfigError, RunConfig
from ..data.download import DownloadError, fetch_once
from ..data.loaders import DistributedTokenLoader, ValidationSet
from ..data.preparation import PrepareConfig, prepare
from ..data.shards import find_shards, make_writable_dir
from ..layout import TRACKER, RunLayout
from .callbacks import build_callback, parse_callback_spec


def prepare_output_dir(path: str | Path) -> Path:
    """The run folder, created and checked writable now rather than at the first save."""
    try:
        return make_writable_dir(path)
    except FileExistsError as error:
        raise ConfigError(f"--output_dir {path} exists and is not a folder; choose another --output_dir.") from error
    except OSError as error:
        raise ConfigError(f"Cannot write to --output_dir {path} ({error.strerror}); choose another folder or fix "
                          "its permissions.") from error


def build_accelerator(config: RunConfig) -> Accelerator:
    """DDP / mixed precision come from ``accelerate launch`` (its config file); gradient accumulation is derived
    from the batch sizes and the number of processes."""
    train = config.train
    state = PartialState(cpu=train.cpu)
    accum = train.grad_accum_steps(state.num_processes)
    project = ProjectConfiguration(project_dir=train.output_dir, logging_dir=train.output_dir)
    return Accelerator(cpu=train.cpu, mixed_precision=train.mixed_precision, gradient_accumulation_steps=accum,
                       log_with=trackers(config.logging.report_to), project_config=project)


def trackers(report_to: list[str]) -> list[str]:
    """TensorBoard (always: the analysis reads its event files) and the other trackers of ``--report_to``, each
    installed (Accelerate would otherwise drop a missing one silently)."""
    from accelerate.tracking import get_available_trackers

    wanted = list(dict.fromkeys([TRACKER, *report_to]))
    available = {str(kind) for kind in get_available_trackers()}
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ConfigError(f"--report_to {' '.join(missing)}: not installed here (pip install {' '.join(missing)}), "
                          "or drop it from --report_to.")
    return wanted


def enable_tf32(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


# The architecture fields of ModelArguments and the GPTConfig attribute each one sets.
ARCHITECTURE = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "vocab_size": "vocab_size",
                "bias": "bias", "qk_norm": "qk_norm", "parametrization": "parametrization",
                "mup_base_width": "mup_base_width"}


def build_model(config: RunConfig) -> GPTForCausalLM:
    model_args, train = config.model, config.train
    if model_args.init_from:
        model = load_initial_weights(model_args.init_from)
        check_initial_architecture(model, config)
    else:
        model = GPTForCausalLM(GPTConfig(
            vocab_size=model_args.vocab_size, n_positions=train.seq_len, n_embd=model_args.n_embd,
            n_layer=model_args.n_layer, n_head=model_args.n_head, bias=model_args.bias, dropout=model_args.dropout,
            initializer_range=model_args.init_std, attn_implementation=model_args.attn_implementation,
            qk_norm=model_args.qk_norm, parametrization=model_args.parametrization,
            mup_base_width=model_args.mup_base_width))
    model.set_attn_implementation(model_args.attn_implementation)
    if model_args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model


def load_initial_weights(source: str) -> GPTForCausalLM:
    """Our checkpoint folder, or a GPT-2 model (Hub id / folder) converted with a padded vocabulary."""
    from transformers import AutoConfig

    from modeling.weight_conversion import from_gpt2

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--init_from {source}: not a model folder (no readable config.json) and not a reachable "
                          f"Hub id ({type(error).__name__}). Pass a checkpoint folder such as runs/<run>/final, or a "
                          "GPT-2 Hub id like gpt2 (online, or cached with HF_HUB_OFFLINE=1).") from error
    if config.model_type == GPTConfig.model_type:
        return GPTForCausalLM.from_pretrained(source)
    return from_gpt2(source)


def check_initial_architecture(model: GPTForCausalLM, config: RunConfig) -> None:
    """``--init_from`` weights define the architecture: the run's model settings must describe the same network
    (otherwise config.yaml would record one model while another is trained)."""
    source, model_args = config.model.init_from, config.model
    differences = [f"--{name} {getattr(model_args, name)!r} (the weights have {getattr(model.config, attribute)!r})"
                   for name, attribute in ARCHITECTURE.items()
                   if getattr(model_args, name) != getattr(model.config, attribute)]
    if differences:
        fix = " ".join(f"--{name} {getattr(model.config, attribute)}" for name, attribute in ARCHITECTURE.items()
                       if getattr(model.config, attribute) is not None)
        raise ConfigError(f"--init_from {source}: the model settings differ from the weights: {'; '.join(differences)}."
                          f" The weights define the architecture; pass their settings ({fix}), or drop --init_from to "
                          "train a new model of this shape.")
    if model.config.n_positions < config.train.seq_len:
        raise ConfigError(f"--init_from {source} has a context of {model.config.n_positions} tokens, shorter than "
                          f"seq_len={config.train.seq_len}.")


def check_tokenizer_fits(model: GPTForCausalLM, tokenizer_vocab_size: int) -> None:
    check_vocab_fits(tokenizer_vocab_size, model.config.vocab_size, what="the model (--vocab_size)")


def download_corpus(url: str, folder: Path) -> Path:
    """Fetch a text corpus once (nanoGPT's tiny shakespeare); a clear error when offline."""
    try:
        return fetch_once(url, folder / Path(url).name, timeout=30)
    except DownloadError as error:
        raise ConfigError(
            f"No --data was given and downloading {error.url} failed ({error.reason}). Pass --data "
            "PATH: a .txt/.jsonl/.json/.parquet corpus or a folder of token shards (scripts/prepare_data.py), "
            "for example a local copy of tinyshakespeare.txt."
        ) from error


def resolve_data_dir(config: RunConfig, accelerator: Accelerator) -> Path:
    """A folder of shards: ``--data`` itself, or shards prepared from the corpus ``--data`` names (or from
    ``--download_url``) into the run's ``data/shards``. The main process prepares; the others wait."""
    data, layout = config.data, RunLayout(config.train.output_dir)
    if data.data is None and data.download_url is None:
        raise ConfigError("No training data: pass --data PATH (a folder of shards from scripts/prepare_data.py, or "
                          "a .txt/.jsonl/.json/.parquet corpus).")
    with accelerator.main_process_first():
        source = Path(data.data) if data.data else download_corpus(data.download_url, layout.download_dir)
        if not source.exists():
            raise ConfigError(f"--data {source} does not exist; pass a folder of token shards or a corpus file.")
        if source.is_dir() and find_shards(source, "train"):
            return source
        if source.is_dir() and (find_shards(source, "val") or any(source.glob("*.npy"))):
            raise ConfigError(f"--data {source} holds token shards but no training shards (<name>_train_NNNNNN.npy); "
                              "point --data at a complete prepared folder (scripts/prepare_data.py).")
        prepared = layout.prepared_shards_dir
        prepare(PrepareConfig(output_dir=str(prepared), files=[str(source)], text_field=data.text_field,
                              name=source.stem.replace("_", "-") or "corpus", shard_tokens=data.shard_tokens,
                              val_tokens=data.val_tokens, progress=accelerator.is_main_process))
        return prepared


def build_data(config: RunConfig, accelerator: Accelerator, vocab_size: int):
    data_dir = resolve_data_dir(config, accelerator)
    train = config.train
    loader = DistributedTokenLoader(data_dir, train.micro_batch_size, train.seq_len, accelerator.process_index,
                                    accelerator.num_processes, vocab_size=vocab_size, shuffle=config.data.shuffle,
                                    seed=config.data.data_seed)
    evaluation = config.evaluation
    val_set = ValidationSet(data_dir, vocab_size=vocab_size, max_tokens=evaluation.eval_tokens) if evaluation.eval_every \
        else None
    return loader, val_set


# ----------------------------------------------------------------------------------------------- start-up checks
def check_run_settings(args, model, tokenizer, val_set, hellaswag, say=print) -> None:
    """Every setting that an optional step (evaluation, HellaSwag, sampling) uses is checked now, before any
    training: a bad one must not surface hours later, at the end of the run, before the final save."""
    context = model.config.n_positions
    if args.warmup_steps > args.max_steps:
        say(f"Note: --warmup_steps {args.warmup_steps} is longer than --max_steps {args.max_steps}: the learning rate "
            f"never reaches --max_lr {args.max_lr:g} (it ends at {args.max_lr * args.max_steps / args.warmup_steps:.3g})."
            " Shorten the warmup for a real run.")
    if args.sample_every > 0:
        prompt_tokens = len(tokenizer.encode(args.sample_prompt))
        if prompt_tokens == 0:
            raise ConfigError("--sample_prompt is empty; give a prompt or set --sample_every 0.")
        if prompt_tokens + args.sample_tokens > context:
            raise ConfigError(
                f"Samples need {prompt_tokens} prompt tokens + --sample_tokens {args.sample_tokens} = "
                f"{prompt_tokens + args.sample_tokens} positions, more than the model's context of {context} "
                f"(--seq_len); lower --sample_tokens to at most {max(0, context - prompt_tokens)}, shorten "
                "--sample_prompt, or set --sample_every 0.")
    if args.eval_every > 0:
        if val_set is None:
            raise ConfigError("--eval_every is set but there is no validation data; set --eval_every 0.")
        usable = val_set.num_tokens(args.seq_len, args.eval_tokens)
        if usable == 0:
            raise ConfigError(
                f"The validation data ({val_set.paths[0]}) has {len(val_set.tokens)} tokens, fewer than "
                f"seq_len + 1 = {args.seq_len + 1}: prepare a larger validation shard (--val_tokens), lower "
                "--seq_len, or set --eval_every 0.")
        if usable < (args.eval_tokens // args.seq_len) * args.seq_len:
            say(f"Note: --eval_tokens {args.eval_tokens:,} asks for more validation tokens than there are: every "
                f"evaluation uses all {usable:,} usable tokens of {val_set.paths[0].parent}.")
    if args.hellaswag_every > 0:
        hellaswag.examples()  # loads (or downloads) and validates the file now


def announce_data_passes(train_loader, max_steps: int, tokens_per_step: int, say=print) -> None:
    """Say so when the run will read its training data more than once (a small corpus, a long run)."""
    stream = getattr(train_loader, "stream", None)
    if stream is None:
        return
    dataset_tokens, needed = sum(stream.lengths), max_steps * tokens_per_step
    if needed > dataset_tokens:
        shuffled = "reshuffled each epoch" if stream.shuffle else "in the same order each epoch (--shuffle)"
        say(f"Note: {max_steps:,} steps x {tokens_per_step:,} tokens = {needed:,} tokens from {dataset_tokens:,} "
            f"training tokens: the data is read {needed / dataset_tokens:.2f} times, {shuffled}; after the first "
            "epoch the training loss partly measures memorisation: judge the run by the validation loss.")


NEEDS_EVALUATION = ("early_stopping",)


def build_callbacks(config: RunConfig, extra=None) -> list:
    """The configured callbacks by name, then the caller's objects, then the Hub push. Cadences come from the
    logging arguments at construction (``every``), unless a spec sets its own (``grad_norm:every=10``)."""
    callbacks = []
    for spec in config.train.callbacks:
        name, _ = parse_callback_spec(spec)
        if name in NEEDS_EVALUATION and config.evaluation.eval_every == 0:
            raise ConfigError(f"Callback {name!r} acts on the validation loss, but evaluation is off (--eval_every 0): "
                              "set --eval_every N, or drop the callback.")
        cadence = config.logging.histogram_every if name == "histograms" else config.logging.diagnostics_every
        callbacks.append(build_callback(spec, {"every": cadence}))
    callbacks += list(extra or [])
    hub = config.hub
    if hub.push_to_hub:
        callbacks.append(build_callback({"name": "push_to_hub", "repo_id": hub.push_to_hub,
                                         "push_checkpoints": hub.push_checkpoints, "private": hub.hub_private}))
    return callbacks


# ----------------------------------------------------------------------------------------------- memory
def refuse_if_it_will_not_fit(config: RunConfig, accelerator, model, grad_accum: int, sharded: bool) -> None:
    """On a GPU: the memory planner's peak for this run against the card; a clear error before the first step
    when it will not fit (rather than an out-of-memory error minutes into a queued job)."""
    device = accelerator.device
    if device.type != "cuda" or not config.train.check_memory:
        return
    problem = memory_verdict(config, model.config, grad_accum, accelerator.num_processes,
                             accelerator.mixed_precision or "no", sharded,
                             bool(getattr(model, "is_gradient_checkpointing", False)),
                             torch.cuda.get_device_properties(device).total_memory, torch.cuda.get_device_name(device))
    if problem:
        raise ConfigError(problem)


def memory_verdict(config: RunConfig, arch, grad_accum: int, processes: int, precision: str, sharded: bool,
                   checkpointing: bool, total_memory: int, card: str) -> str | None:
    """None when the run fits ``card``; else the error: the planned peak, the usable memory, the fix. ``arch`` is the
    model's config: its attention kernel, dropout, qk_norm, bias and MLP width are planned as the model has them."""
    from ..planning.memory_plan import (
        Shape,
        attention_kernel,
        describe,
        diagnostic_weight_copies,
        format_bytes,
        plan_run,
    )

    train = config.train
    attention = getattr(arch, "_attn_implementation", None) or config.model.attn_implementation
    precision = "bf16" if precision == "fp8" else precision  # fp8 recipes keep most saved activations in bf16
    shape = Shape(n_layer=arch.n_layer, n_head=arch.n_head, n_embd=arch.n_embd, vocab_size=arch.vocab_size,
                  seq_len=train.seq_len, micro_batch_size=train.micro_batch_size, grad_accum=grad_accum,
                  num_processes=processes, mixed_precision=precision, sharded=sharded, checkpointing=checkpointing,
                  optimizer=config.optimizer.optimizer, device="cuda",
                  attn_implementation=attention, dropout=getattr(arch, "dropout", config.model.dropout),
                  qk_norm=bool(getattr(arch, "qk_norm", config.model.qk_norm)),
                  bias=bool(getattr(arch, "bias", config.model.bias)), z_loss=config.optimizer.z_loss > 0,
                  n_inner=getattr(arch, "n_inner", None), n_positions=getattr(arch, "n_positions", None),
                  weight_copies=diagnostic_weight_copies(train.callbacks, config.logging.diagnostics_every,
                                                         config.logging.histogram_every))
    plan = plan_run(shape, total_memory, card, train.total_batch_tokens)
    if plan.fits:
        return None
    if plan.largest_micro_batch:
        fix = (f"--micro_batch_size {plan.largest_micro_batch} (accumulation {plan.accumulation_for_it} keeps the "
               "total batch)")
        if attention_kernel(shape) == "eager":
            fix += ", or --attn_implementation sdpa (eager keeps every block's T x T attention matrices)"
    else:
        fix = "; or ".join(plan.ways_out)
    return (f"This run will not fit on {card}: the planned peak is {format_bytes(plan.peak_bytes)} per process against "
            f"{format_bytes(plan.budget_bytes)} usable. Use {fix}; --check_memory false tries anyway.\n"
            f"{describe(plan)}")
