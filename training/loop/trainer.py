"""The Accelerate training loop.

The loop does the mechanics of one optimizer step (gradient-accumulated forward/backward, clipping, the
optimizer and schedule step, bookkeeping) and carries out what the callbacks decided through ``control``
(log, evaluate, run HellaSwag, sample, save, skip an update, stop). When to do those things lives in
``callbacks.FlowCallback``, not here. Callbacks reach the run's logs only through ``RunLog`` (the ``RunLogger``
contract of ``callbacks.py``).
"""

import contextlib
import json
import logging
import math
import shutil
import time
import warnings
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import TrainerState
from transformers.utils import logging as hf_logging

from modeling.tokenization import TiktokenGPT2, save_hf_tokenizer

from ..evaluation.hellaswag import HellaSwagInLoop
from ..evaluation.sampling import generate_samples
from ..evaluation.validation import validation_loss
from ..layout import (
    CHECKPOINT_MODEL_SUBDIR,
    RUN_CONFIG_FILE,
    TENSORBOARD_DIR,
    TRACKER,
    TRAINING_STATE_FILE,
    RunLayout,
    Tags,
    temporary_name,
)
from .arguments import ConfigError, RunConfig
from .builders import (
    build_accelerator,
    build_callbacks,
    build_data,
    build_model,
    check_tokenizer_fits,
    enable_tf32,
    prepare_output_dir,
)
from .callbacks import GPTTrainerControl, RunCallbackHandler
from .checkpointing import (
    CheckpointManager,
    check_resume_compatible,
    describe_unloadable,
    folder_size,
    publish_folder,
    raise_if_disk_full,
    recover_folder,
    write_json,
)
from .distributed import full_state_dict, is_sharded, runs_here
from .optimization import OptimizerView, build_optimizers, build_scheduler, device_peak_flops, model_flops_per_token


class _SharedTensorNotice(logging.Filter):
    """Accelerate warns "Removed shared tensor {'lm_head.weight'}" at every save: that is the tied head, saved
    once by design, and the warning would otherwise repeat at every checkpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_SharedTensorNotice())


@contextlib.contextmanager
def quiet_progress_bars():
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf and the run was told to stop."""


class TooManySkippedUpdates(NonFiniteLossError):
    """Updates were skipped (NaN/inf or spikes) more often than --max_consecutive_skips / --max_skipped_updates."""


class RunLog:
    """The run's logs as callbacks see them (implements ``callbacks.RunLogger``): scalars to TensorBoard through
    the accelerator's tracker and into ``state.log_history`` (then ``on_log``), metrics added to the current
    step's line, histograms and text on the main process."""

    def __init__(self, accelerator, state: TrainerState, on_log):
        self.accelerator, self.state, self._on_log = accelerator, state, on_log
        self._step_metrics: dict[str, float] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        step = self.state.global_step if step is None else step
        self.accelerator.log(metrics, step=step)
        self.state.log_history.append({**metrics, "step": step})
        self._on_log(metrics)

    def add_step_metrics(self, metrics: dict[str, float]) -> None:
        self._step_metrics.update(metrics)

    def take_step_metrics(self) -> dict[str, float]:
        """The metrics callbacks added during this step (and forget them)."""
        metrics, self._step_metrics = self._step_metrics, {}
        return metrics

    def _writer(self):
        if not self.accelerator.is_main_process:
            return None
        return self.accelerator.get_tracker(TENSORBOARD_DIR, unwrap=True)

    def log_histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        if (writer := self._writer()) is not None:
            writer.add_histogram(tag, values.detach().float().cpu(), step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        if (writer := self._writer()) is not None:
            writer.add_text(tag, text, step)

    def log_hparams(self, values: dict) -> None:
        """The configuration in TensorBoard's HParams tab, written by the run's own writer: SummaryWriter's
        add_hparams (and Accelerate's store_init_configuration) would open a sub-run named by a timestamp, which
        TensorBoard lists as one more run."""
        from torch.utils.tensorboard.summary import hparams

        if (writer := self._writer()) is not None:
            for summary in hparams(values, {}):
                writer._get_file_writer().add_summary(summary)


class TrainingProgress:
    """Everything about the run's position that is not model/optimizer/RNG: saved with ``save_state``."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer

    def state_dict(self) -> dict:
        t = self.trainer
        return {"global_step": t.state.global_step, "tokens_seen": t.state.num_input_tokens_seen,
                "best_metric": t.state.best_metric, "best_global_step": t.state.best_global_step,
                "log_history": list(t.state.log_history), "skipped_updates": t.skipped_updates,
                "consecutive_skips": t.consecutive_skips,
                "callbacks": t.callbacks.callback_states()}

    def load_state_dict(self, state: dict) -> None:
        t = self.trainer
        t.state.global_step = state["global_step"]
        t.state.num_input_tokens_seen = state["tokens_seen"]
        t.state.best_metric, t.state.best_global_step = state["best_metric"], state["best_global_step"]
        t.state.log_history = list(state["log_history"])
        t.skipped_updates = state["skipped_updates"]
        t.consecutive_skips = state.get("consecutive_skips", 0)
        t.callbacks.load_callback_states(state["callbacks"])


class Trainer:
    """Pretrains a ``GPTForCausalLM``. ``model``, ``train_loader``, ``val_set`` and ``callbacks`` can be passed
    in (tests, notebooks); otherwise they are built from ``config``."""

    def __init__(self, config: RunConfig, callbacks=None, model=None, train_loader=None, val_set=None):
        self.config = config
        self.args = config.train
        self.accelerator = build_accelerator(config)
        self.device = self.accelerator.device
        enable_tf32(self.device)
        set_seed(self.args.seed)
        self.grad_accum = self.accelerator.gradient_accumulation_steps
        self.output_dir = prepare_output_dir(self.args.output_dir, self.accelerator.process_index)
        self.layout = RunLayout(self.output_dir)

        self.tokenizer = TiktokenGPT2()
        self.raw_model = model if model is not None else build_model(config)
        check_tokenizer_fits(self.raw_model, self.tokenizer.vocab_size)
        self.raw_model.to(self.device)
        if train_loader is None:
            train_loader, built_val = build_data(config, self.accelerator, self.raw_model.config.vocab_size)
            val_set = val_set if val_set is not None else built_val
        self.train_loader, self.val_set = train_loader, val_set

        optimizers = build_optimizers(self.raw_model, self.args, self.device.type)
        self.schedulers = [build_scheduler(o, self.args.warmup_steps, self.args.max_steps, self.args.max_lr,
                                           self.args.min_lr) for o in optimizers]
        self.model, *self.optimizers = self.accelerator.prepare(self.raw_model, *optimizers)
        self.optimizer, self.scheduler = self.optimizers[0], self.schedulers[0]  # AdamW: the one HF callbacks see
        if self.args.compile:
            # Only the training forward is compiled; evaluation and generate use raw_model (same parameters).
            self.model = torch.compile(self.model)

        self.state = TrainerState(max_steps=self.args.max_steps, logging_steps=config.logging.log_every,
                                  eval_steps=self.args.eval_every, save_steps=self.args.save_every,
                                  train_batch_size=self.args.micro_batch_size, log_history=[],
                                  is_local_process_zero=self.accelerator.is_local_main_process,
                                  is_world_process_zero=self.accelerator.is_main_process)
        self.control = GPTTrainerControl()
        self.callbacks = RunCallbackHandler(build_callbacks(config, callbacks), self.raw_model, None,
                                            self.optimizer if len(self.optimizers) == 1 else
                                            OptimizerView(self.optimizers), self.scheduler)
        self.log = RunLog(self.accelerator, self.state, on_log=lambda logs: self._fire("on_log", logs=logs))
        self.hellaswag = HellaSwagInLoop(self.args.hellaswag_path, self.args.hellaswag_limit)
        self.skipped_updates = 0
        self.consecutive_skips = 0
        self.progress = TrainingProgress(self)
        self.accelerator.register_for_checkpointing(*self.schedulers, self.train_loader, self.progress)
        self.checkpoints = CheckpointManager(self.layout.checkpoints_dir, self.args.keep_last)
        self.resumed_step: int | None = None
        self.elapsed_seconds, self.steps_this_session = 0.0, 0  # of the last train() call, for summary()

        self.tokens_per_step = self.args.micro_batch_size * self.args.seq_len * self.grad_accum * \
            self.accelerator.num_processes
        self.num_parameters = sum(p.numel() for p in self.raw_model.parameters())
        self.flops_per_token = model_flops_per_token(self.raw_model, self.args.seq_len)
        self.peak_flops = config.logging.peak_flops or device_peak_flops(self.device)
        self.check_settings()
        self._fire("on_init_end")

    def check_settings(self) -> None:
        """Every setting that an optional step (evaluation, HellaSwag, sampling) uses is checked now, before any
        training: a bad one must not surface hours later, at the end of the run, before the final save."""
        args, context = self.args, self.raw_model.config.n_positions
        if args.sample_every > 0:
            prompt_tokens = len(self.tokenizer.encode(args.sample_prompt))
            if prompt_tokens == 0:
                raise ConfigError("--sample_prompt is empty; give a prompt or set --sample_every 0.")
            if prompt_tokens + args.sample_tokens > context:
                raise ConfigError(
                    f"Samples need {prompt_tokens} prompt tokens + --sample_tokens {args.sample_tokens} = "
                    f"{prompt_tokens + args.sample_tokens} positions, more than the model's context of {context} "
                    f"(--seq_len); lower --sample_tokens to at most {max(0, context - prompt_tokens)}, shorten "
                    "--sample_prompt, or set --sample_every 0.")
        if args.eval_every > 0:
            if self.val_set is None:
                raise ConfigError("--eval_every is set but there is no validation data; set --eval_every 0.")
            if self.val_set.num_tokens(args.seq_len, args.eval_tokens) == 0:
                raise ConfigError(
                    f"The validation data ({self.val_set.paths[0]}) has {len(self.val_set.tokens)} tokens, fewer than "
                    f"seq_len + 1 = {args.seq_len + 1}: prepare a larger validation shard (--val_tokens), lower "
                    "--seq_len, or set --eval_every 0.")
        if args.hellaswag_every > 0:
            self.hellaswag.examples()  # loads (or downloads) and validates the file now
        self._announce_data_passes()

    def _announce_data_passes(self) -> None:
        """Say so when the run will read its training data more than once (a small corpus, a long run)."""
        stream = getattr(self.train_loader, "stream", None)
        if stream is None:
            return
        dataset_tokens, needed = sum(stream.lengths), self.args.max_steps * self.tokens_per_step
        if needed > dataset_tokens:
            shuffled = "reshuffled each epoch" if stream.shuffle else "in the same order each epoch (--shuffle)"
            self.accelerator.print(
                f"Note: {self.args.max_steps:,} steps x {self.tokens_per_step:,} tokens = {needed:,} tokens from "
                f"{dataset_tokens:,} training tokens: the data is read {needed / dataset_tokens:.2f} times, "
                f"{shuffled}; after the first epoch the training loss partly measures memorisation: judge the run by "
                f"the validation loss.")

    # ------------------------------------------------------------------------------------------- hooks, logs
    def _fire(self, event: str, **kwargs):
        self.control = self.callbacks.fire(event, self.args, self.state, self.control, logger=self.log, **kwargs)
        return self.control

    def _init_tracking(self) -> None:
        run_name = self.config.logging.run_name or self.output_dir.name
        # After a resume, TensorBoard readers drop what an earlier writer logged at steps after the checkpoint
        # (the tail of a crashed run, or an abandoned branch), so the logs show one history.
        init_kwargs = {TRACKER: {"purge_step": self.resumed_step + 1}} if self.resumed_step is not None else {}
        self.accelerator.init_trackers(TENSORBOARD_DIR, init_kwargs=init_kwargs)
        self.log.log_hparams(self.config.flat())
        if self.accelerator.is_main_process:
            self.config.save(self.layout.config_file)
            config_text = self.layout.config_file.read_text()
            self.log.log_text(Tags.CONFIG_TEXT, f"run `{run_name}`\n\n```yaml\n{config_text}```".replace("\n", "  \n"),
                              0)
            self.accelerator.log({Tags.RUN_GRAD_ACCUM_STEPS: self.grad_accum,
                                  Tags.RUN_TOKENS_PER_STEP: self.tokens_per_step,
                                  Tags.RUN_NUM_PROCESSES: self.accelerator.num_processes,
                                  Tags.RUN_GRAD_CLIP: self.args.grad_clip,
                                  Tags.RUN_PARAMETERS: self.num_parameters,
                                  Tags.RUN_VOCAB_SIZE: self.raw_model.config.vocab_size}, step=0)

    # ------------------------------------------------------------------------------------------- the step
    def _forward_backward(self) -> float:
        """``grad_accum`` micro-steps; returns the loss averaged over micro-steps and processes."""
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(self.grad_accum):
            x, y = self.train_loader.next_batch()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self.accelerator.accumulate(self.model):
                loss = self.model(x, shift_labels=y, use_cache=False).loss  # no KV cache in training
                self.accelerator.backward(loss)  # divides by grad_accum; DDP all-reduces on the last micro-step
            loss_sum += loss.detach()
        return self.accelerator.reduce(loss_sum / self.grad_accum, "mean").item()

    def _clip(self) -> float:
        """Total gradient norm before clipping (clipping is skipped when grad_clip is 0)."""
        max_norm = self.args.grad_clip if self.args.grad_clip > 0 else float("inf")
        return float(self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm))

    def _last_checkpoint(self) -> str:
        latest = self.checkpoints.latest()
        return f"the last good checkpoint is {latest}" if latest else "no checkpoint was saved yet"

    def _handle_nonfinite(self, loss: float, grad_norm: float) -> None:
        step = self.state.global_step + 1
        if self.args.on_nonfinite == "skip":
            self.control.should_skip_update = True
            return
        where = self._last_checkpoint()
        raise NonFiniteLossError(
            f"Step {step}: loss={loss}, grad_norm={grad_norm} (not finite); stopping, {where}. Resume from it with "
            "a lower --max_lr / longer --warmup_steps, or pass --on_nonfinite skip to skip such updates."
        )

    def _count_skip(self, loss: float, grad_norm: float) -> None:
        self.skipped_updates += 1
        self.consecutive_skips += 1
        step, args = self.state.global_step + 1, self.args
        if self.consecutive_skips > args.max_consecutive_skips or self.skipped_updates > args.max_skipped_updates:
            where = self._last_checkpoint()
            raise TooManySkippedUpdates(
                f"Step {step}: {self.consecutive_skips} updates skipped in a row, {self.skipped_updates} in total "
                f"(limits --max_consecutive_skips {args.max_consecutive_skips}, --max_skipped_updates "
                f"{args.max_skipped_updates}; last loss={loss}, grad_norm={grad_norm}): the run is not training. "
                f"Stopping; {where}. Resume from it with a lower --max_lr or a longer --warmup_steps.")

    def training_step(self) -> dict:
        started = time.perf_counter()
        lrs = [o.param_groups[0]["lr"] for o in self.optimizers]
        loss = self._forward_backward()
        if not self.accelerator.sync_gradients:
            # Never silent: without a sync micro-step the wrapped optimizer's step() and zero_grad() do nothing.
            raise RuntimeError(f"Step {self.state.global_step + 1}: the last of {self.grad_accum} micro-steps did not "
                               f"synchronise gradients (Accelerate's micro-step counter is {self.accelerator.step}); "
                               "the optimizer would silently skip this update.")
        grad_norm = self._clip()
        self._fire("on_pre_optimizer_step", loss=loss, grad_norm=grad_norm)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self._handle_nonfinite(loss, grad_norm)
        if self.control.should_skip_update:
            self._count_skip(loss, grad_norm)
        else:
            self.consecutive_skips = 0
            for optimizer in self.optimizers:
                optimizer.step()
            self._fire("on_optimizer_step")
        for optimizer, scheduler in zip(self.optimizers, self.schedulers):
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()  # also after a skipped update: the schedule follows the step count
        self.state.global_step += 1
        self.state.num_input_tokens_seen += self.tokens_per_step
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        tokens_per_sec = self.tokens_per_step / elapsed
        metrics = {Tags.TRAIN_LOSS: loss, Tags.TRAIN_LR: lrs[0], Tags.TRAIN_GRAD_NORM: grad_norm,
                   Tags.TRAIN_TOKENS_SEEN: float(self.state.num_input_tokens_seen),
                   Tags.TRAIN_TOKENS_PER_SEC: tokens_per_sec, Tags.TRAIN_STEP_TIME_MS: elapsed * 1000,
                   Tags.TRAIN_EPOCH: float(self.train_loader.epoch),
                   Tags.TRAIN_SKIPPED_UPDATES: float(self.skipped_updates)}
        if len(lrs) > 1:
            metrics[Tags.TRAIN_LR_MUON] = lrs[1]
        if self.peak_flops:
            metrics[Tags.TRAIN_MFU] = self.flops_per_token * tokens_per_sec / (self.peak_flops *
                                                                               self.accelerator.num_processes)
        return metrics

    # ------------------------------------------------------------------------------------------- actions
    def evaluate(self) -> dict:
        if self.val_set is None:
            return {}
        metrics = validation_loss(self.raw_model, self.val_set, self.args.micro_batch_size, self.args.seq_len,
                                  self.device, self.accelerator.process_index, self.accelerator.num_processes,
                                  self.args.eval_tokens, reduce=self.accelerator.reduce,
                                  autocast=self.accelerator.autocast)
        self._fire("on_evaluate", metrics=metrics)
        if self.state.best_metric is None or metrics["eval_loss"] < self.state.best_metric:
            self.state.best_metric, self.state.best_global_step = metrics["eval_loss"], self.state.global_step
        self.log.log_metrics({Tags.VAL_LOSS: metrics["eval_loss"], Tags.VAL_PERPLEXITY: metrics["eval_perplexity"]})
        return metrics

    def sample(self) -> list[str]:
        if not runs_here(self.raw_model, self.accelerator.is_main_process):
            return []
        # Sharded parameters: every process generates (same seed, same tokens) so each forward's gathers match.
        texts = generate_samples(self.raw_model, self.tokenizer, self.args.sample_prompt, self.args.num_samples,
                                 self.args.sample_tokens, seed=self.args.seed + self.state.global_step)
        if not self.accelerator.is_main_process:
            return texts
        self.log.log_text(Tags.SAMPLES, "\n\n".join(f"{i}. {t}" for i, t in enumerate(texts)).replace("\n", "  \n"),
                      self.state.global_step)
        return texts

    def run_hellaswag(self) -> dict:
        metrics = self.hellaswag(self.raw_model, self.tokenizer, self.accelerator)
        if metrics:
            self.log.log_metrics({Tags.HELLASWAG_ACC: metrics["acc"], Tags.HELLASWAG_ACC_NORM: metrics["acc_norm"]})
        return metrics

    def save_checkpoint(self) -> Path:
        """Every process writes its part of ``save_state`` into a temporary folder; the main process adds the
        ``from_pretrained`` folder and publishes it with a rename."""
        step = self.state.global_step
        tmp = self.checkpoints.temporary_path(step)
        if self.accelerator.is_main_process:
            self.checkpoints.remove_incomplete()
        self.accelerator.wait_for_everyone()
        try:
            self.accelerator.save_state(str(tmp))
            self.save_model(tmp / CHECKPOINT_MODEL_SUBDIR)
        except OSError as error:
            latest = self.checkpoints.latest()
            shutil.rmtree(tmp, ignore_errors=True)  # give the space back; the previous checkpoints are intact
            raise_if_disk_full(error, tmp, folder_size(latest) if latest else 5 * 4 * self.num_parameters, latest)
            raise
        self.accelerator.wait_for_everyone()
        path = self.checkpoints.path_for(step)
        if self.accelerator.is_main_process:
            path = self.checkpoints.commit(step)
        self.accelerator.wait_for_everyone()
        self._fire("on_save", checkpoint_dir=path)
        return path

    def save_model(self, folder: Path) -> None:
        """A folder ``AutoModelForCausalLM.from_pretrained`` loads: weights, config with auto_map, modeling code,
        tokenizer files, and what the run knows about itself (``training_state.json``, ``run_config.yaml``).
        Called on every process: sharded weights are gathered by all of them; the main process writes."""
        state_dict = full_state_dict(self.raw_model) if is_sharded(self.raw_model) else None
        if not self.accelerator.is_main_process:
            return
        with quiet_progress_bars():  # transformers' "Writing model shards" bar would cut through the training bar
            self.raw_model.save_pretrained(folder, state_dict=state_dict)
        save_hf_tokenizer(folder, model_max_length=self.raw_model.config.n_positions)
        self.config.save(folder / RUN_CONFIG_FILE)
        last_eval = next((h for h in reversed(self.state.log_history) if Tags.VAL_LOSS in h), {})
        write_json(folder / TRAINING_STATE_FILE, {
            "global_step": self.state.global_step, "tokens_seen": self.state.num_input_tokens_seen,
            "tokens_per_step": self.tokens_per_step, "num_processes": self.accelerator.num_processes,
            "best_val_loss": self.state.best_metric, "last_val_loss": last_eval.get(Tags.VAL_LOSS),
            "skipped_updates": self.skipped_updates,
            "parameters": self.num_parameters,
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "mixed_precision": self.accelerator.mixed_precision,
        })

    def save_final_model(self) -> Path:
        """``final/`` written like a checkpoint: a complete temporary folder, fsynced, then renamed into place, so
        a crash while writing it leaves the previous ``final/`` whole (weights and training_state.json agree).
        Called on every process (see ``save_model``)."""
        final = self.layout.final_dir
        tmp = final.with_name(temporary_name(final.name))
        if self.accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.save_model(tmp)
        if self.accelerator.is_main_process:
            publish_folder(tmp, final)
        return final

    def _carry_out(self, metrics: dict) -> None:
        if self.control.should_log:
            self.log.log_metrics(metrics)
        if self.control.should_evaluate:
            self.evaluate()
        if self.control.should_run_hellaswag:
            self.run_hellaswag()
        if self.control.should_save:
            self.save_checkpoint()  # before sampling: nothing optional runs between a step and its checkpoint
        if self.control.should_sample:
            try:
                self.sample()
            except Exception as error:  # samples are for looking at: never worth the run
                warnings.warn(f"Step {self.state.global_step}: sampling failed ({type(error).__name__}: {error}); "
                              "training continues.", stacklevel=1)

    # ------------------------------------------------------------------------------------------- run
    def resume(self, spec: str) -> Path:
        path = self.checkpoints.resolve(spec)
        check_resume_compatible(path, self.config)
        try:
            self.accelerator.load_state(str(path))
        except ValueError as error:  # the data loader refuses a position in other shards / shuffling
            raise ConfigError(f"Cannot resume from {path}: {error}") from error
        except Exception as error:  # noqa: BLE001 - torch/safetensors raise many types for damaged files
            raise ConfigError(describe_unloadable(path, error, self.checkpoints)) from error
        # load_state restores Accelerate's micro-step counter, which counts micro-steps of the saved layout
        # (processes x accumulation). Checkpoints are taken at optimizer-step boundaries, so under any layout the
        # position inside the step is 0; a stale count would make accumulate() miss the sync micro-step.
        self.accelerator.step = 0
        self.resumed_step = self.state.global_step
        if self.accelerator.is_main_process:
            branch = self.checkpoints.abandon_after(self.state.global_step, extra=self._final_after(self.resumed_step))
            if branch is not None:
                self.accelerator.print(f"Rolled back to step {self.resumed_step}: the newer checkpoints of the "
                                       f"abandoned branch were moved to {branch}.")
        self.accelerator.wait_for_everyone()
        return path

    def _final_after(self, step: int) -> list[Path]:
        """``final/`` if it was written by a run that went past ``step`` (it belongs to the abandoned branch)."""
        state_file = self.layout.final_dir / TRAINING_STATE_FILE
        if state_file.exists() and json.loads(state_file.read_text()).get("global_step", 0) > step:
            return [self.layout.final_dir]
        return []

    def train(self) -> TrainerState:
        if self.accelerator.is_main_process:
            recover_folder(self.layout.final_dir)
        if self.args.resume_from_checkpoint:
            resumed = self.resume(self.args.resume_from_checkpoint)
            self.accelerator.print(f"Resumed from {resumed} at step {self.state.global_step}.")
        self._init_tracking()
        self._fire("on_train_begin")
        started, first_step = time.perf_counter(), self.state.global_step
        bar = tqdm(total=self.args.max_steps, initial=self.state.global_step, desc="training", unit="step",
                   disable=not (self.accelerator.is_main_process and self.config.logging.progress_bar),
                   dynamic_ncols=True)
        try:
            while self.state.global_step < self.args.max_steps and not self.control.should_training_stop:
                self.control._new_step()
                self._fire("on_step_begin")
                metrics = self.training_step()
                self._fire("on_step_end")
                metrics.update(self.log.take_step_metrics())  # what callbacks added during this step
                self._carry_out(metrics)
                bar.set_postfix(self._progress_fields(metrics), refresh=False)  # before update: drawn once
                bar.update(1)
        finally:
            bar.close()
        self.save_final_model()
        self.accelerator.wait_for_everyone()
        self._fire("on_train_end")  # after the final save, so callbacks (e.g. the Hub push) find it
        self.elapsed_seconds = time.perf_counter() - started
        self.steps_this_session = self.state.global_step - first_step
        return self.state

    def _progress_fields(self, metrics: dict) -> dict:
        fields = {"loss": f"{metrics[Tags.TRAIN_LOSS]:.4f}"}
        last_val = self.last_logged(Tags.VAL_LOSS)
        if last_val is not None:
            fields["val"] = f"{last_val:.4f}"
        fields.update(lr=f"{metrics[Tags.TRAIN_LR]:.2e}", tok_s=f"{metrics[Tags.TRAIN_TOKENS_PER_SEC]:,.0f}")
        return fields

    def last_logged(self, tag: str) -> float | None:
        return next((h[tag] for h in reversed(self.state.log_history) if tag in h), None)

    def summary(self) -> str:
        """What the run achieved and where its outputs are, printed at the end of ``scripts/pretrain.py``."""
        losses = [h[Tags.TRAIN_LOSS] for h in self.state.log_history if Tags.TRAIN_LOSS in h][-20:]
        train_loss = sum(losses) / len(losses) if losses else float("nan")
        val = self.last_logged(Tags.VAL_LOSS)
        elapsed, tokens = self.elapsed_seconds, self.steps_this_session * self.tokens_per_step
        minutes, seconds = divmod(int(round(elapsed)), 60)
        run, final = self.layout.root, self.layout.final_dir
        lines = [f"Done: {self.state.global_step:,} steps, {self.state.num_input_tokens_seen:,} tokens "
                 f"({minutes}m {seconds:02d}s this session, {tokens / max(elapsed, 1e-9):,.0f} tokens/s).",
                 f"  train loss (mean of the last {len(losses)} steps): {train_loss:.4f}"
                 + (f"   validation loss: {val:.4f} (best {self.state.best_metric:.4f} at step "
                    f"{self.state.best_global_step})" if val is not None else "   (no validation: --eval_every 0)"),
                 f"  model: {final}   checkpoints: {self.layout.checkpoints_dir}   logs: {self.layout.tensorboard_dir}",
                 "Next:",
                 f"  python scripts/analyze_run.py {run}                  # plots + a written diagnosis",
                 f"  python scripts/evaluate_checkpoints.py {final} --skip_hellaswag",
                 f"  python scripts/generate.py {final} --prompt \"{self.args.sample_prompt}\"",
                 f"  tensorboard --logdir {run.parent}"]
        return "\n".join(lines)

    def finish_tracking(self) -> None:
        """Flush and close the TensorBoard writer but keep the process group (several runs in one process: sweeps)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers = []

    def close(self) -> None:
        """Flush trackers and tear down the process group; call last."""
        self.accelerator.end_training()
