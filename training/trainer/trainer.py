"""The Accelerate training loop: the components composed, one step, and what follows it, in one place.

``Trainer.train`` reads top to bottom: resume if asked, then for every step ``training_step`` (the micro-batches'
forward and backward, clipping, the guards' verdict, the update and the schedule) and ``after_step`` (logging,
validation, HellaSwag, the checkpoint and samples, each on its own component's cadence, or when a callback asks for
it through ``control``). The components own their configuration, state and cadence:

    optim/        the optimizers and their schedule          guards/       what happens to a step that went wrong
    run/          checkpoints, resume, the run folder,       diagnostics/  per-layer statistics (callbacks), the
                  preemption, the run's progress                           noise scale, where the time goes
    evaluation/   validation, HellaSwag, samples             trainer/      this loop, its construction, its logs

Callbacks (transformers' ``TrainerCallback``) see ``args`` (every setting by name), ``state``, ``control`` and a
logger; never the trainer.
"""

import contextlib
import json
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, set_seed
from transformers import TrainerState

from modeling.tokenization import TiktokenGPT2

from ..cadence import is_due
from ..config import RunConfig
from ..diagnostics.noise_scale import NoiseScaleProbe
from ..diagnostics.timing import PER_STEP, StepClock
from ..distributed import is_sharded
from ..errors import UserError
from ..evaluation.in_loop import InLoopEvaluation
from ..guards.guards import Guards
from ..guards.policies import NonFiniteLossError, RunStopped, TooManySkippedUpdates, Verdict
from ..guards.spike_guard import ACTIONS as SPIKE_ACTIONS
from ..layout import RunLayout, Tags
from ..optim.flops import card_peak_flops, model_flops_per_token
from ..optim.optimizers import (
    OptimizerView,
    apply_hyperparameters,
    build_optimizers,
    build_scheduler,
    peak_lrs,
    schedule_lr,
    set_schedule,
)
from ..optim.schedules import Schedule
from ..run.checkpointing import Checkpointer, append_jsonl, check_resume_compatible, recover_folder, saved_run_config
from ..run.preemption import Preempted, SignalCatcher, resume_command
from ..run.progress import RunProgress
from ..run.resumption import ResumePlan, plan_resume, setting_changes
from ..run.run_folder import RunFolderLock, check_run_folder, folder_state, undo_unused_claim
from .builders import (
    announce_data_passes,
    build_accelerator,
    build_callbacks,
    build_data,
    build_model,
    check_run_settings,
    check_tokenizer_fits,
    enable_tf32,
    prepare_output_dir,
    refuse_if_it_will_not_fit,
)
from .callbacks import GPTTrainerControl, RunCallbackHandler
from .progress_display import ProgressDisplay
from .run_log import RunLog
from .summary import start_banner
from .tracking import start_tracking

try:
    import resource  # the CPU's peak-memory metric (not on Windows)
except ImportError:
    resource = None

# Callback events inside a step: their time is the step's "callbacks" share (diagnostics, policies).
STEP_EVENTS = ("on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end")

__all__ = ["NonFiniteLossError", "Preempted", "RunStopped", "TooManySkippedUpdates", "Trainer"]


@dataclass
class StepLosses:
    """What the micro-batches of one step measured, reduced over processes."""

    loss: float  # the cross-entropy (without the z-loss term)
    z_loss: float
    stop_signalled: bool  # a stop signal reached some process: every process stops after this step


@dataclass
class StepResult:
    """One optimizer step's outcome: its metrics, the guards' verdict, and whether its update was skipped."""

    metrics: dict
    verdict: Verdict
    skipped: bool
    losses: StepLosses
    grad_norm: float


class Trainer:
    """Pretrains a ``GPTForCausalLM``. ``model``, ``train_loader``, ``val_set`` and ``callbacks`` can be passed
    in (tests, notebooks); otherwise they are built from ``config``. The run folder is owned (locked) from
    construction until ``close()`` / ``finish_tracking()``."""

    def __init__(self, config: RunConfig, callbacks=None, model=None, train_loader=None, val_set=None):
        self.config = config
        self.args = config.args  # every setting by name, read-only
        self.accelerator = build_accelerator(config)
        self.device = self.accelerator.device
        enable_tf32(self.device)
        set_seed(config.train.seed)
        self.grad_accum = self.accelerator.gradient_accumulation_steps
        self.folder_before = folder_state(config.train.output_dir)  # what to leave it as if the run is refused
        self.output_dir = prepare_output_dir(config.train.output_dir)
        self.layout = RunLayout(self.output_dir)
        self.lock = RunFolderLock(self.output_dir)
        try:
            self._claim_run_folder()
            self._build(callbacks, model, train_loader, val_set)
        except BaseException:
            self.release_run_folder()
            raise

    # ------------------------------------------------------------------------------------------- construction
    def _claim_run_folder(self) -> None:
        """The main process takes the folder's lock and checks whose folder it is; every process learns the
        outcome, so a refusal stops all of them."""
        problem = None
        if self.accelerator.is_main_process:
            try:
                if note := self.lock.acquire():
                    print(note)
                check_run_folder(self.output_dir, resuming=self.resumes_in_place(),
                                 overwrite=self.config.checkpoint.overwrite_output_dir)
            except UserError as error:
                problem = error
        if self.accelerator.num_processes > 1:
            problem = broadcast_object_list([problem])[0]
        if problem:
            raise problem

    def resumes_in_place(self) -> bool:
        """Resuming this folder's own run (``latest`` or one of its checkpoints), not branching from another's."""
        spec = self.config.checkpoint.resume_from_checkpoint
        if not spec:
            return False
        return spec == "latest" or self.layout.checkpoints_dir.resolve() in Path(spec).resolve().parents

    def _build(self, callbacks, model, train_loader, val_set) -> None:
        config, args = self.config, self.args
        self.tokenizer = TiktokenGPT2()
        self.raw_model = model if model is not None else build_model(config)
        check_tokenizer_fits(self.raw_model, self.tokenizer.vocab_size)
        self.raw_model.to(self.device)
        if train_loader is None:
            train_loader, built_val = build_data(config, self.accelerator, self.raw_model.config.vocab_size)
            val_set = val_set if val_set is not None else built_val
        self.train_loader = train_loader
        self._build_optimization()
        self._build_components(callbacks, val_set)
        self.tokens_per_step = args.micro_batch_size * args.seq_len * self.grad_accum * self.accelerator.num_processes
        self.num_parameters = sum(p.numel() for p in self.raw_model.parameters())
        self.flops_per_token = model_flops_per_token(self.raw_model, args.seq_len)
        self.peak_flops, self.mfu_card = self._mfu_peak()
        check_run_settings(args, self.raw_model, self.tokenizer, self.evaluation.val_set, self.evaluation.hellaswag,
                           self.accelerator.print)
        if not self.noise.available and config.logging.diagnostics_every > 0:
            self.accelerator.print(f"Note: the gradient noise scale is not measured: {self.noise.why_not}.")
        announce_data_passes(self.train_loader, self.state.max_steps, self.tokens_per_step, self.accelerator.print)
        self._fire("on_init_end")

    def _build_optimization(self) -> None:
        """The optimizers (prepared with the model), their schedulers, the noise probe and the memory check."""
        config, args = self.config, self.args
        optimizers = build_optimizers(self.raw_model, config.optimizer, self.device.type)
        self.schedule = Schedule.from_args(args)
        self.schedulers = [build_scheduler(o, self.schedule, peak)
                           for o, peak in zip(optimizers, peak_lrs(config.optimizer))]
        self.model, *self.optimizers = self.accelerator.prepare(self.raw_model, *optimizers)
        self.optimizer, self.scheduler = self.optimizers[0], self.schedulers[0]  # AdamW: the one HF callbacks see
        self.noise = NoiseScaleProbe(self.model, self.accelerator.num_processes, self.grad_accum,
                                     args.micro_batch_size * args.seq_len, is_sharded(self.raw_model),
                                     args.micro_batch_size, loss_scale=self._loss_scale)
        refuse_if_it_will_not_fit(config, self.accelerator, self.raw_model, self.grad_accum, is_sharded(self.raw_model))
        if args.compile:
            # Only the training forward is compiled; evaluation and generate use raw_model (same parameters).
            self.model = torch.compile(self.model)

    def _build_components(self, callbacks, val_set) -> None:
        """Progress, guards, callbacks, logs, evaluation and checkpoints; the progress is registered for
        checkpointing after the schedulers and the data position (the order earlier checkpoints hold them in)."""
        config, args = self.config, self.args
        self.state = TrainerState(max_steps=args.max_steps, logging_steps=config.logging.log_every,
                                  eval_steps=args.eval_every, save_steps=args.save_every,
                                  train_batch_size=args.micro_batch_size, log_history=[],
                                  is_local_process_zero=self.accelerator.is_local_main_process,
                                  is_world_process_zero=self.accelerator.is_main_process)
        self.control = GPTTrainerControl()
        self.guards = Guards(config.guards)
        self.callbacks = RunCallbackHandler(build_callbacks(config, callbacks), self.raw_model, None,
                                            self.optimizer if len(self.optimizers) == 1 else
                                            OptimizerView(self.optimizers), self.scheduler)
        self.progress = RunProgress(self.state, {"callbacks": self.callbacks, "noise_scale": self.noise.estimate,
                                                 "guards": self.guards})
        self.log = RunLog(self.accelerator, self.state, on_log=lambda logs: self._fire("on_log", logs=logs),
                          log_every=config.logging.log_every)
        self.evaluation = InLoopEvaluation(config.evaluation, val_set, self.tokenizer, args.micro_batch_size,
                                           args.seq_len, args.seed)
        self.accelerator.register_for_checkpointing(*self.schedulers, self.train_loader, self.progress)
        self.checkpointer = Checkpointer(self.accelerator, self.raw_model, self.effective_config, self.layout,
                                         self.training_state, config.checkpoint.keep_last, config.checkpoint.save_every)
        self.signals = SignalCatcher()
        self.clock = StepClock()
        self.resume_plan: ResumePlan | None = None
        self.resumed_step: int | None = None
        self.elapsed_seconds, self.steps_this_session = 0.0, 0  # of the last train() call, for the summary
        self.last_samples: tuple[int, list[str]] = (0, [])

    def _loss_scale(self) -> float:
        """fp16's GradScaler multiplies the loss by its scale before the backward; 1 under any other precision."""
        scaler = self.accelerator.scaler
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def _mfu_peak(self) -> tuple[float | None, str | None]:
        """The per-device peak MFU is measured against, and which card it is; said once at start-up."""
        given, processes = self.config.logging.peak_flops, self.accelerator.num_processes
        if given:
            card = "given (--peak_flops)"
        elif self.device.type != "cuda":
            return None, None
        else:
            name = torch.cuda.get_device_name(self.device)
            found = card_peak_flops(name)
            if found is None:
                self.accelerator.print(f"Note: MFU is not computed: {name!r} is not in the table of cards "
                                       "(training/optim/flops.py); pass --peak_flops with its dense bf16 "
                                       "FLOP/s per device.")
                return None, None
            card, given = f"{found[0]} ({name})", found[1]
        self.accelerator.print(f"MFU against {card}: {given / 1e12:,.0f} TFLOP/s dense bf16 per device, x "
                               f"{processes} process(es).")
        return given, card

    # ------------------------------------------------------------------------------------------- the run
    def train(self) -> TrainerState:
        """Resume if asked, then step until the last step (or a stop), then save the final model."""
        if self.accelerator.is_main_process:
            recover_folder(self.layout.final_dir)
        if self.config.checkpoint.resume_from_checkpoint:
            resumed = self.resume(self.config.checkpoint.resume_from_checkpoint)
            self.accelerator.print(f"Resumed from {resumed} at step {self.state.global_step}.")
        self._init_tracking()
        if self.resume_plan is not None:
            self.resume_plan.log(self.log, self.layout, self.accelerator.is_main_process)
        self.accelerator.print(start_banner(self))
        self._fire("on_train_begin")
        started, first_step = time.perf_counter(), self.state.global_step
        self.session_started = started
        display = ProgressDisplay(self.state, self.config.logging, self.accelerator.is_main_process)
        self.signals.install()
        try:
            while not self.progress.at_end and not self.control.should_training_stop:
                result = self.training_step()
                if result.verdict.rollback is not None:
                    self.rollback(result.verdict.rollback)
                    display.jump(self.state.global_step)
                    continue
                self.after_step(result)
                display.step(result.metrics, self.log.last(Tags.VAL_LOSS))
                if result.losses.stop_signalled:
                    self._stop_for_signal()
        finally:
            self.signals.uninstall()
            display.close()
            self.elapsed_seconds = time.perf_counter() - started
            self.steps_this_session = self.state.global_step - first_step
        self._finish()
        return self.state

    def _finish(self) -> None:
        self.stopped_early = not self.progress.at_end
        if note := self.guards.end_note(self.state.global_step):
            self.accelerator.print(note)
        self.save_final_model()
        self.accelerator.wait_for_everyone()
        self._fire("on_train_end")  # after the final save, so callbacks (e.g. the Hub push) find it

    # ------------------------------------------------------------------------------------------- the step
    def training_step(self) -> StepResult:
        """One optimizer step: ``grad_accum`` micro-steps, clip, the guards' verdict, update, schedule."""
        self.control._new_step()
        self._fire("on_step_begin")
        started, step = time.perf_counter(), self.state.global_step + 1
        lrs = [schedule_lr(o) for o in self.optimizers]  # the schedule's, before μP's per-group scaling
        self.noise.start_step(is_due(step, self.config.logging.diagnostics_every, first=True))
        losses = self._forward_backward()
        with self.clock.measure("optimizer"):
            grad_norm = self._clip()
        noise = self.noise.finish_step(grad_norm ** 2)
        self._fire("on_pre_optimizer_step", loss=losses.loss, grad_norm=grad_norm)
        verdict = self.guards.judge(step, losses.loss, grad_norm, self.checkpoints.latest_before)
        self._record_interventions(verdict)
        if verdict.stop is not None:
            raise verdict.stop.located(self.checkpointer.latest_note())
        skipped = verdict.skip or self.control.should_skip_update
        self._update(skipped)
        self.progress.advance(self.tokens_per_step)
        self._fire("on_step_end")
        if budget_spent := self.guards.count(step, skipped, losses.loss, grad_norm):
            self.control.stop_error = budget_spent  # raised once the step's logs and checkpoint are written
        metrics = self._step_metrics(losses, grad_norm, lrs, time.perf_counter() - started, noise)
        metrics.update(self.log.take_step_metrics())  # what callbacks added during this step
        return StepResult(metrics, verdict, skipped, losses, grad_norm)

    def _forward_backward(self) -> StepLosses:
        """``grad_accum`` micro-steps; the loss averaged over micro-steps and processes. A pending stop signal
        travels in the same reduction, so every process learns of it at the same step."""
        loss_sum = torch.zeros((), device=self.device)
        z_sum = torch.zeros((), device=self.device)
        extra = {"z_loss": self.config.optimizer.z_loss} if self.config.optimizer.z_loss else {}
        for micro in range(self.grad_accum):
            with self.clock.measure("data"):
                x, y = self.train_loader.next_batch()
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with self.clock.measure("forward_backward"), self.accelerator.accumulate(self.model):
                # One piece, or two halves when the noise probe measures a one-process step without accumulation.
                for piece, (xp, yp, weight) in enumerate(self.noise.pieces(x, y)):
                    out = self.model(xp, shift_labels=yp, use_cache=False, **extra)  # no KV cache in training
                    # accelerator.backward divides by grad_accum; DDP all-reduces on the last micro-step.
                    self.accelerator.backward(out.loss * weight if weight != 1.0 else out.loss)
                    self.noise.after_backward(micro, piece, weight, self.raw_model.parameters())
                    loss_sum += out.loss.detach() * weight
                    if extra:
                        z_sum += out.z_loss.detach() * weight
        self._check_synchronised()
        signal_flag = torch.tensor(float(self.signals.requested), device=self.device)
        with self.clock.measure("forward_backward"):  # .item() waits for the kernels: their time lands here
            totals = self.accelerator.reduce(torch.stack([(loss_sum - z_sum) / self.grad_accum,
                                                          z_sum / self.grad_accum, signal_flag]), "sum")
            stop_signalled = bool(totals[2].item() > 0)
        processes = self.accelerator.num_processes
        return StepLosses(totals[0].item() / processes, totals[1].item() / processes, stop_signalled)

    def _check_synchronised(self) -> None:
        if not self.accelerator.sync_gradients:
            # Never silent: without a sync micro-step the wrapped optimizer's step() and zero_grad() do nothing.
            raise RuntimeError(f"Step {self.state.global_step + 1}: the last of {self.grad_accum} micro-steps did not "
                               f"synchronise gradients (Accelerate's micro-step counter is {self.accelerator.step}); "
                               "the optimizer would silently skip this update.")

    def _clip(self) -> float:
        """Total gradient norm before clipping (clipping is skipped when grad_clip is 0)."""
        clip = self.config.optimizer.grad_clip
        return float(self.accelerator.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf")))

    def _update(self, skipped: bool) -> None:
        """Apply the update (unless skipped), clear the gradients and step the schedule (also after a skipped
        update: the schedule follows the step count)."""
        with self.clock.measure("optimizer"):
            if not skipped:
                for optimizer in self.optimizers:
                    optimizer.step()
        if not skipped:
            self._fire("on_optimizer_step")
        with self.clock.measure("optimizer"):
            for optimizer, scheduler in zip(self.optimizers, self.schedulers):
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
            if self.device.type == "cuda":
                torch.cuda.synchronize()  # the step's kernels are done: its time is its own

    def _step_metrics(self, losses: StepLosses, grad_norm: float, lrs: list[float], elapsed: float,
                      noise: dict | None = None) -> dict:
        """Every per-step scalar, made here and nowhere else."""
        tokens_per_sec = self.tokens_per_step / elapsed
        metrics = {Tags.TRAIN_LOSS: losses.loss, Tags.TRAIN_LR: lrs[0], Tags.TRAIN_GRAD_NORM: grad_norm,
                   Tags.TRAIN_TOKENS_SEEN: float(self.state.num_input_tokens_seen),
                   Tags.TRAIN_TOKENS_PER_SEC: tokens_per_sec, Tags.TRAIN_STEP_TIME_MS: elapsed * 1000,
                   Tags.TRAIN_EPOCH: float(self.train_loader.epoch),
                   Tags.TRAIN_SKIPPED_UPDATES: float(self.guards.skipped)}
        if len(lrs) > 1:
            metrics[Tags.TRAIN_LR_MUON] = lrs[1]
        if self.config.optimizer.z_loss:
            metrics[Tags.TRAIN_Z_LOSS] = losses.z_loss
        if self.config.optimizer.grad_clip > 0:
            metrics[Tags.TRAIN_GRAD_CLIP] = self.config.optimizer.grad_clip
        metrics.update({Tags.TIME + f"{name}_ms": 1000 * seconds for name, seconds in self.clock.take().items()
                        if name in PER_STEP})
        if noise:
            metrics.update({Tags.NOISE_SCALE_TOKENS: noise["b_simple"], Tags.NOISE_GRAD_SQ: noise["g_sq"],
                            Tags.NOISE_TRACE: noise["trace"], Tags.NOISE_TOKENS_PER_STEP: float(self.tokens_per_step)})
        if self.peak_flops:
            metrics[Tags.TRAIN_MFU] = self.flops_per_token * tokens_per_sec / (self.peak_flops *
                                                                               self.accelerator.num_processes)
        if self.device.type == "cuda":  # the allocator's peak during this step, then reset for the next one
            metrics[Tags.TRAIN_PEAK_MEMORY_GB] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
            torch.cuda.reset_peak_memory_stats(self.device)
        elif resource is not None:  # the process's peak resident size so far: KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            metrics[Tags.TRAIN_PEAK_MEMORY_GB] = peak * (1 if sys.platform == "darwin" else 1024) / 2 ** 30
        return metrics

    # ------------------------------------------------------------------------------------------- after the step
    def after_step(self, result: StepResult) -> None:
        """What follows a step, each on its component's cadence or when a callback asks through ``control``; the
        checkpoint comes before sampling, so nothing optional runs between a step and its checkpoint."""
        step, last, control = self.state.global_step, self.progress.at_end, self.control
        if self.log.due(step, last) or control.should_log:
            with self.clock.measure("logging"):
                self.log.log_metrics(result.metrics)
        if self.evaluation.validation_due(step, last) or control.should_evaluate:
            with self.clock.measure("evaluation"):
                self.evaluate()
        if self.evaluation.hellaswag_due(step, last):
            with self.clock.measure("hellaswag"):
                self.run_hellaswag()
        if self.checkpointer.due(step, last) or control.should_save or result.losses.stop_signalled:
            with self.clock.measure("checkpoint"):
                self.save_checkpoint()
        if self.evaluation.samples_due(step, last):
            with self.clock.measure("sampling"):
                self._sample_safely()
        self._log_occasional_times()
        if (error := control.stop_error) is not None:
            control.stop_error = None
            raise error.located(self.checkpointer.latest_note())

    def _log_occasional_times(self) -> None:
        occasional = {Tags.TIME + f"{name}_ms": 1000 * seconds for name, seconds in self.clock.take().items()
                      if seconds > 0 and name not in PER_STEP and name != "logging"}
        if occasional:
            self.log.log_scalars(occasional, step=self.state.global_step)

    def evaluate(self) -> dict:
        if self.evaluation.val_set is None:
            return {}
        metrics = self.evaluation.validate(self.raw_model, self.accelerator)
        self._fire("on_evaluate", metrics=metrics)
        self.progress.record_best(metrics["eval_loss"])
        self.log.log_metrics({Tags.VAL_LOSS: metrics["eval_loss"], Tags.VAL_PERPLEXITY: metrics["eval_perplexity"]})
        target = self.config.train.target_val_loss
        if target is not None and metrics["eval_loss"] <= target:  # reached: stop, and save where it stopped
            self.control.should_training_stop = self.control.should_save = True
        return metrics

    def run_hellaswag(self) -> dict:
        metrics = self.evaluation.run_hellaswag(self.raw_model, self.accelerator)
        if metrics:
            self.log.log_metrics({Tags.HELLASWAG_ACC: metrics["acc"], Tags.HELLASWAG_ACC_NORM: metrics["acc_norm"]})
        return metrics

    def sample(self) -> list[str]:
        texts = self.evaluation.samples(self.raw_model, self.state.global_step, self.accelerator.is_main_process)
        self.last_samples = (self.state.global_step, texts or [])  # the end-of-run summary shows one
        if texts and self.accelerator.is_main_process:
            self.log.log_text(Tags.SAMPLES, "\n\n".join(f"{i}. {t}" for i, t in enumerate(texts)),
                              self.state.global_step)
        return texts

    def _sample_safely(self) -> None:
        try:
            self.sample()
        except Exception as error:  # samples are for looking at: never worth the run
            warnings.warn(f"Step {self.state.global_step}: sampling failed ({type(error).__name__}: {error}); "
                          "training continues.", stacklevel=1)

    def save_checkpoint(self) -> Path:
        path = self.checkpointer.save(self.state.global_step)
        self._fire("on_save", checkpoint_dir=path)
        return path

    def save_final_model(self) -> Path:
        return self.checkpointer.save_final()

    # ------------------------------------------------------------------------------------------- interventions
    def _record_interventions(self, verdict: Verdict) -> None:
        """The guards' new records: to ``interventions.jsonl`` at once, to TensorBoard at their step (a rollback's
        at the step it returned to, after the abandoned steps are purged: see ``rollback``); its status lines to
        the console and TensorBoard."""
        for step, armed, message in verdict.status:
            self.accelerator.print(message)
            self.log.log_scalars({Tags.SPIKE_GUARD_ARMED: armed}, step=step)
        for record in verdict.records:
            if self.accelerator.is_main_process:
                append_jsonl(self.layout.interventions_file, record)
            if record["action"] != "rollback":
                self._log_intervention(record, record["step"])

    def _log_intervention(self, record: dict, step: int) -> None:
        self.log.log_scalars({Tags.SPIKE_GUARD_ACTION: SPIKE_ACTIONS[record["action"]]}, step=step)
        self.log.log_text(Tags.INTERVENTIONS_TEXT, json.dumps(record, default=float), step)

    def rollback(self, request: dict) -> None:
        """Carry out the spike guard's rollback: restore the checkpoint before the spike (keeping the current
        settings and the guard's record), set the newer checkpoints and the records of the abandoned steps aside as
        an abandoned branch, move the data past the batches that followed, make TensorBoard drop the abandoned
        steps, and record again any setting that differs from the checkpoint's (it applies from there on)."""
        guard = self.guards.spike_guard
        escalation, checkpoint = guard.escalation_state(), Path(request["checkpoint"])
        self.checkpointer.load(checkpoint)
        guard.restore_escalation(escalation)
        self._apply_settings(self.schedule)  # a checkpoint from before a changed resume keeps the new settings
        step = self.state.global_step
        branch = self.checkpointer.branch_after(step)
        skip = getattr(self.train_loader, "skip_tokens", None)
        if skip is None:
            raise RunStopped(f"Step {step}: the spike guard must skip data, but the training loader "
                             f"({type(self.train_loader).__name__}) cannot (no skip_tokens method)")
        skip(request["skip_steps"] * self.tokens_per_step)
        self.resumed_step = step
        self._finish_trackers()
        self._init_tracking()
        if changes := setting_changes(saved_run_config(checkpoint), self.config.to_dict()):
            ResumePlan(step=step, checkpoint=checkpoint, changes=changes,
                       reason="a spike-guard rollback to a checkpoint written under other settings"
                       ).log(self.log, self.layout, self.accelerator.is_main_process)
        self._log_intervention(guard.interventions[-1], step)
        self.accelerator.print(f"Spike guard: rolled back to {checkpoint} (step {step}); the data resumes "
                               f"{request['skip_steps']} steps' worth of batches later"
                               + (f"; the abandoned checkpoints and records are in {branch}" if branch else "") + ".")

    # ------------------------------------------------------------------------------------------- resuming
    def resume(self, spec: str) -> Path:
        """Restore a checkpoint (moments, step, data position, RNG, progress) and carry out the resume plan: the
        current arguments' hyperparameters and schedule from the resumed step, saying what changed."""
        path = self.checkpointer.manager.resolve(spec)
        check_resume_compatible(path, self.config)
        self.checkpointer.load(path)
        in_place = self.resumes_in_place()
        plan = plan_resume(path, self.config, self.progress, in_place)
        step = self.progress.step
        if in_place and (branch := self.checkpointer.branch_after(step)) is not None:
            self.accelerator.print(f"Returned to step {step}: what this folder held after it (newer checkpoints, a "
                                   f"later final model, the records of those steps) was moved to {branch}.")
        self.progress.cooldown = plan.cooldown
        self.progress.schedule_anchor = plan.new_schedule.anchor
        self.state.max_steps = plan.new_schedule.max_steps
        self._apply_settings(plan.new_schedule)
        for line in plan.lines():
            self.accelerator.print(line)
        self.resume_plan, self.resumed_step = plan, step
        return path

    def _apply_settings(self, schedule: Schedule) -> None:
        """The current arguments' hyperparameters on the optimizers, and ``schedule`` on their schedulers (a
        checkpoint restores the old ones with the moments)."""
        self.schedule = schedule
        apply_hyperparameters(self.optimizers, self.config.optimizer)
        for scheduler, peak in zip(self.schedulers, peak_lrs(self.config.optimizer)):
            set_schedule(scheduler, schedule, peak)

    # ------------------------------------------------------------------------------------------- facts
    @property
    def skipped_updates(self) -> int:
        return self.guards.skipped

    @property
    def checkpoints(self):
        return self.checkpointer.manager

    def training_state(self) -> dict:
        """What ``training_state.json`` records beside every saved model."""
        return {"global_step": self.state.global_step, "tokens_seen": self.state.num_input_tokens_seen,
                "tokens_per_step": self.tokens_per_step, "num_processes": self.accelerator.num_processes,
                "best_val_loss": self.state.best_metric, "last_val_loss": self.log.last(Tags.VAL_LOSS),
                "skipped_updates": self.skipped_updates, "parameters": self.num_parameters,
                "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "mixed_precision": self.accelerator.mixed_precision, "mfu_peak_flops": self.peak_flops,
                "mfu_card": self.mfu_card, "time_shares_this_session": self.time_shares(),
                # Set only in final/: the run ended before max_steps because a callback stopped it (its
                # target_val_loss reached, early stopping); such a run is finished, not interrupted.
                "stopped_early": getattr(self, "stopped_early", None)}

    def time_shares(self) -> dict[str, float]:
        """Shares of this session's training wall time per category (timing.py), so far."""
        started = getattr(self, "session_started", None)
        return self.clock.shares(time.perf_counter() - started) if started else {}

    def effective_config(self) -> RunConfig:
        """The configuration as the run carries it out: its ``max_steps`` is the schedule's end (a cool-down moves
        it), so config.yaml describes the run that trained."""
        if self.config.train.max_steps == self.state.max_steps:
            return self.config
        return replace(self.config, train=replace(self.config.train, max_steps=self.state.max_steps))

    def last_logged(self, tag: str) -> float | None:
        return self.log.last(tag)

    # ------------------------------------------------------------------------------------------- plumbing
    def _stop_for_signal(self) -> None:
        """After a SIGTERM/SIGINT: the step is finished and its checkpoint saved; tell the user how to go on."""
        checkpoint = self.checkpointer.manager.path_for(self.state.global_step)
        what = self.signals.name or "a stop signal (on another process)"
        raise Preempted(f"Stopped by {what} after step {self.state.global_step} of {self.state.max_steps}: checkpoint "
                        f"{checkpoint}.", resume_command(self.config.train.output_dir))

    def _init_tracking(self) -> None:
        start_tracking(self)

    def _fire(self, event: str, **kwargs):
        category = "callbacks" if event in STEP_EVENTS else "logging" if event == "on_log" else None
        with self.clock.measure(category) if category else contextlib.nullcontext():
            self.control = self.callbacks.fire(event, self.args, self.state, self.control, logger=self.log,
                                               **kwargs)
        return self.control

    # ------------------------------------------------------------------------------------------- teardown
    def release_run_folder(self) -> None:
        """Give up the folder's lock; a run refused before it wrote anything but its marker (bad data, a checkpoint
        it cannot resume) leaves the folder as it found it (``undo_unused_claim``)."""
        self.lock.release()
        if self.accelerator.is_main_process:
            undo_unused_claim(self.output_dir, self.folder_before)

    def _finish_trackers(self) -> None:
        self.log.block_runs.close()
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers = []

    def finish_tracking(self) -> None:
        """Flush and close the TensorBoard writer and give up the run folder, but keep the process group (several
        runs in one process: sweeps)."""
        self._finish_trackers()
        self.release_run_folder()

    def close(self) -> None:
        """Flush trackers, give up the run folder and tear down the process group; call last."""
        self.release_run_folder()
        self.accelerator.end_training()
