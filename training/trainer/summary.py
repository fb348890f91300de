"""What a run says at its start (what will run) and at its end (what it achieved, where things are, what to do
next): the same words for every script that trains (``pretrain.py``, ``cooldown.py``, each run of ``sweep.py``)."""

from pathlib import Path

from ..layout import Tags

TENSORBOARD_PORT = 6006


def start_banner(trainer) -> str:
    """Parameters and shape, the data and its size, steps x tokens per step and the epochs that makes, the schedule,
    the processes and device."""
    model, args, state = trainer.raw_model.config, trainer.args, trainer.state
    steps = state.max_steps - state.global_step
    tokens = steps * trainer.tokens_per_step
    data = getattr(trainer.train_loader, "stream", None)
    dataset_tokens = sum(data.lengths) if data is not None else None
    source = Path(args.data).name if args.data else (Path(args.download_url).name if args.download_url else "data")
    size = f" ({dataset_tokens:,} training tokens)" if dataset_tokens else ""
    epochs = f" ({tokens / dataset_tokens:.2f} epochs)" if dataset_tokens else ""
    start = f" from step {state.global_step}" if state.global_step else ""
    device = trainer.device.type + (f" ({trainer.mfu_card})" if trainer.mfu_card else "")
    mup = (f", μP at {model.mup_width_mult:g}x the base width {model.mup_base_width}"
           if getattr(model, "parametrization", "sp") == "mup" else "")
    return (f"Training {trainer.num_parameters:,} parameters ({model.n_layer} layers x {model.n_embd} wide, "
            f"{model.n_head} heads{mup}) on {source}{size}: {steps:,} steps{start} x {trainer.tokens_per_step:,} "
            f"tokens = {tokens:,} tokens{epochs}; lr {args.max_lr:g} {trainer.schedule.describe()}; "
            f"{trainer.accelerator.num_processes} process(es) on {device}, accumulation {trainer.grad_accum}.")


def time_shares(trainer) -> str:
    """Where this session's wall time went, largest share first (training/diagnostics/timing.py)."""
    shares = trainer.clock.shares(trainer.elapsed_seconds)
    names = {"forward_backward": "forward+backward"}
    parts = [f"{names.get(name, name)} {100 * share:.1f}%" for name, share in
             sorted(shares.items(), key=lambda item: -item[1]) if share >= 0.005]
    return ", ".join(parts) or "n/a"


def sample_lines(trainer, width: int = 100) -> list[str]:
    """The first of the last samples (one line, cut to ``width``), so the run's text is seen without TensorBoard."""
    step, texts = trainer.last_samples
    if not texts:
        return []
    text = " ".join(texts[0].split())
    return [f"  sample at step {step}: {text[:width] + ('...' if len(text) > width else '')}"]


def end_summary(trainer) -> str:
    """What the run achieved and where its outputs are, the link that opens TensorBoard on the loss, the learning
    rate and the reference, and the next commands."""
    losses = trainer.log.recent(Tags.TRAIN_LOSS, 20)
    train_loss = sum(losses) / len(losses) if losses else float("nan")
    val, state = trainer.log.last(Tags.VAL_LOSS), trainer.state
    elapsed, tokens = trainer.elapsed_seconds, trainer.steps_this_session * trainer.tokens_per_step
    minutes, seconds = divmod(int(round(elapsed)), 60)
    run, final = trainer.layout.root, trainer.layout.final_dir
    return "\n".join([
        f"Done: {state.global_step:,} steps, {state.num_input_tokens_seen:,} tokens "
        f"({minutes}m {seconds:02d}s this session, {tokens / max(elapsed, 1e-9):,.0f} tokens/s).",
        f"  train loss (mean of the last {len(losses)} steps): {train_loss:.4f}"
        + (f"   validation loss: {val:.4f} (best {state.best_metric:.4f} at step {state.best_global_step})"
           if val is not None else "   (no validation: --eval_every 0)"),
        f"  time: {time_shares(trainer)}",
        *sample_lines(trainer),
        f"  model: {final}   checkpoints: {trainer.layout.checkpoints_dir}   logs: {trainer.layout.tensorboard_dir}",
        f"  TensorBoard: tensorboard --logdir {run.parent}  then open "
        f"http://localhost:{TENSORBOARD_PORT}/#custom_scalars (the loss with the reference, and the learning rate)",
        "Next:",
        f"  python scripts/analyze_run.py {run}                  # plots + a written diagnosis",
        f"  python scripts/evaluate_checkpoints.py {final} --skip_hellaswag",
        f"  python scripts/generate.py {final} --prompt \"{trainer.args.sample_prompt}\""])
