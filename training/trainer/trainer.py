"""The Accelerate training loop.

The loop does the mechanics of one optimizer step (gradient-accumulated forward/backward, clipping, the optimizer
and schedule step, bookkeeping) and carries out what the callbacks decided through ``control`` (log, evaluate, run
HellaSwag, sample, save, skip an update, stop). Its other jobs live beside it: when to do those things in
``callbacks.FlowCallback``; what to do with a step that went wrong in ``policies``; saving, resuming and rolling
back in ``checkpointing``; changed settings on resume in ``resumption``; the logs in ``run_log``; start-up checks
and construction in ``builders``; who owns the run folder in ``run_folder``; signals in ``preemption``.
"""

import contextlib
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, set_seed
from tqdm.auto import tqdm
from transformers import TrainerState

from modeling.tokenization import TiktokenGPT2

from ..config import RunConfig
from ..diagnostics.noise_scale import NoiseScaleProbe
from ..diagnostics.timing import PER_STEP, StepClock
from ..distributed import is_sharded, runs_here
from ..errors import UserError
from ..evaluation.hellaswag import HellaSwagInLoop
from ..evaluation.sampling import generate_samples
from ..evaluation.validation import validation_loss
from ..guards.policies import NonFiniteLossError, NonFinitePolicy, RunStopped, SkipBudget, TooManySkippedUpdates
from ..guards.spike_guard import ACTIONS as SPIKE_ACTIONS
from ..guards.spike_guard import SpikeGuard
from ..layout import TENSORBOARD_PROJECT, TRACKER, RunLayout, Tags
from ..optim.flops import card_peak_flops, model_flops_per_token
from ..optim.optimizers import (
    OptimizerView,
    apply_hyperparameters,
    build_optimizers,
    build_scheduler,
    peak_lrs,
    set_schedule,
)
from ..optim.schedules import Schedule, anchor_from_dict, anchor_to_dict
from ..run.checkpointing import Checkpointer, append_jsonl, recover_folder, saved_run_config
from ..run.preemption import Preempted, SignalCatcher, resume_command
from ..run.resumption import ResumePlan, plan_resume, setting_changes
from ..run.run_folder import RunFolderLock, check_run_folder
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
from .callbacks import GPTTrainerControl, RunCallbackHandler, is_due
from .run_log import RunLog

# Callback events inside a step: their time is the step's "callbacks" share (diagnostics, policies).
STEP_EVENTS = ("on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end")

__all__ = ["NonFiniteLossError", "Preempted", "RunStopped", "TooManySkippedUpdates", "Trainer"]


class TrainingProgress:
    """Everything about the run's position that is not model/optimizer/RNG: saved with ``save_state``."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer

    def state_dict(self) -> dict:
        t = self.trainer
        return {"global_step": t.state.global_step, "tokens_seen": t.state.num_input_tokens_seen,
                "best_metric": t.state.best_metric, "best_global_step": t.state.best_global_step,
                "log_history": list(t.state.log_history), "callbacks": t.callbacks.callback_states(),
                "schedule_anchor": anchor_to_dict(t.schedule.anchor), "cooldown": t.cooldown,
                "noise_scale": t.noise.estimate.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        t = self.trainer
        t.state.global_step = state["global_step"]
        t.state.num_input_tokens_seen = state["tokens_seen"]
        t.state.best_metric, t.state.best_global_step = state["best_metric"], state["best_global_step"]
        t.state.log_history = list(state["log_history"])
        t.callbacks.load_callback_states(state["callbacks"])
        if "skipped_updates" in state:  # checkpoints written before SkipBudget existed
            t.skip_budget.skipped = state["skipped_updates"]
            t.skip_budget.consecutive = state.get("consecutive_skips", 0)
        t.saved_anchor = anchor_from_dict(state.get("schedule_anchor"))
        if "noise_scale" in state:
            t.noise.estimate.load_state_dict(state["noise_scale"])
        t.cooldown = state.get("cooldown")


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
        set_seed(self.args.seed)
        self.grad_accum = self.accelerator.gradient_accumulation_steps
        self.output_dir = prepare_output_dir(self.args.output_dir)
        self.layout = RunLayout(self.output_dir)
        self.lock = RunFolderLock(self.output_dir)
        try:
            self._claim_run_folder()
            self._build(callbacks, model, train_loader, val_set)
        except BaseException:
            self.release_run_folder()
            raise

    def _claim_run_folder(self) -> None:
        """The main process takes the folder's lock and checks that a fresh run does not overwrite another; every
        process learns the outcome, so a refusal stops all of them."""
        problem = None
        if self.accelerator.is_main_process:
            try:
                if note := self.lock.acquire():
                    print(note)
                check_run_folder(self.output_dir, resuming=self.resumes_in_place(),
                                 overwrite=self.args.overwrite_output_dir)
            except UserError as error:
                problem = error
        if self.accelerator.num_processes > 1:
            problem = broadcast_object_list([problem])[0]
        if problem:
            raise problem

    def resumes_in_place(self) -> bool:
        """Resuming this folder's own run (``latest`` or one of its checkpoints), not branching from another's."""
        spec = self.args.resume_from_checkpoint
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
        self.train_loader, self.val_set = train_loader, val_set

        optimizers = build_optimizers(self.raw_model, args, self.device.type)
        self.schedule = Schedule.from_args(args)
        self.saved_anchor, self.cooldown = None, None
        self.schedulers = [build_scheduler(o, self.schedule, peak) for o, peak in zip(optimizers, peak_lrs(args))]
        self.model, *self.optimizers = self.accelerator.prepare(self.raw_model, *optimizers)
        self.optimizer, self.scheduler = self.optimizers[0], self.schedulers[0]  # AdamW: the one HF callbacks see
        self.noise = NoiseScaleProbe(self.model, self.accelerator.num_processes, self.grad_accum,
                                     args.micro_batch_size * args.seq_len, is_sharded(self.raw_model),
                                     args.micro_batch_size, loss_scale=self._loss_scale)
        refuse_if_it_will_not_fit(config, self.accelerator, self.raw_model, self.grad_accum, is_sharded(self.raw_model))
        if args.compile:
            # Only the training forward is compiled; evaluation and generate use raw_model (same parameters).
            self.model = torch.compile(self.model)

        self.state = TrainerState(max_steps=args.max_steps, logging_steps=config.logging.log_every,
                                  eval_steps=args.eval_every, save_steps=args.save_every,
                                  train_batch_size=args.micro_batch_size, log_history=[],
                                  is_local_process_zero=self.accelerator.is_local_main_process,
                                  is_world_process_zero=self.accelerator.is_main_process)
        self.control = GPTTrainerControl()
        self.skip_budget = SkipBudget(args.max_consecutive_skips, args.max_skipped_updates)
        self.spike_guard = SpikeGuard(args.spike_guard_z, args.spike_guard_window, args.spike_guard_patience,
                                      args.spike_guard_rollbacks, args.spike_guard_skip_steps) \
            if args.spike_guard else None
        policies = [NonFinitePolicy(args.on_nonfinite), self.skip_budget] + ([self.spike_guard] if self.spike_guard
                                                                             else [])
        self.callbacks = RunCallbackHandler(build_callbacks(config, callbacks) + policies, self.raw_model, None,
                                            self.optimizer if len(self.optimizers) == 1 else
                                            OptimizerView(self.optimizers), self.scheduler)
        self.log = RunLog(self.accelerator, self.state, on_log=lambda logs: self._fire("on_log", logs=logs))
        self.hellaswag = HellaSwagInLoop(args.hellaswag_path, args.hellaswag_limit)
        self.progress = TrainingProgress(self)
        self.accelerator.register_for_checkpointing(*self.schedulers, self.train_loader, self.progress)
        self.checkpointer = Checkpointer(self.accelerator, self.raw_model, self.effective_config, self.layout,
                                         self.training_state, config.checkpoint.keep_last)
        self.signals = SignalCatcher()
        self.stop_signalled = False
        self.clock = StepClock()
        self.resume_plan: ResumePlan | None = None
        self.resumed_step: int | None = None
        self.elapsed_seconds, self.steps_this_session = 0.0, 0  # of the last train() call, for the summary

        self.tokens_per_step = args.micro_batch_size * args.seq_len * self.grad_accum * self.accelerator.num_processes
        self.num_parameters = sum(p.numel() for p in self.raw_model.parameters())
        self.flops_per_token = model_flops_per_token(self.raw_model, args.seq_len)
        self.peak_flops, self.mfu_card = self._mfu_peak()
        check_run_settings(args, self.raw_model, self.tokenizer, self.val_set, self.hellaswag, self.accelerator.print)
        if not self.noise.available and config.logging.diagnostics_every > 0:
            self.accelerator.print(f"Note: the gradient noise scale is not measured: {self.noise.why_not}.")
        announce_data_passes(self.train_loader, args.max_steps, self.tokens_per_step, self.accelerator.print)
        self._fire("on_init_end")

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

    # ------------------------------------------------------------------------------------------- the step
    def training_step(self) -> dict:
        """One optimizer step: ``grad_accum`` micro-steps, clip, the policies' verdict, update, schedule."""
        started = time.perf_counter()
        lrs = [o.param_groups[0]["lr"] for o in self.optimizers]
        self.noise.start_step(is_due(self.state.global_step + 1, self.config.logging.diagnostics_every, first=True))
        loss = self._forward_backward()
        with self.clock.measure("optimizer"):
            grad_norm = self._clip()
        noise = self.noise.finish_step(grad_norm ** 2)
        self._fire("on_pre_optimizer_step", loss=loss, grad_norm=grad_norm)
        self._record_interventions()
        self._raise_if_stopped()
        with self.clock.measure("optimizer"):
            if not self.control.should_skip_update:
                for optimizer in self.optimizers:
                    optimizer.step()
        if not self.control.should_skip_update:
            self._fire("on_optimizer_step")
        with self.clock.measure("optimizer"):
            for optimizer, scheduler in zip(self.optimizers, self.schedulers):
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()  # also after a skipped update: the schedule follows the step count
            if self.device.type == "cuda":
                torch.cuda.synchronize()  # the step's kernels are done: its time is its own
        self.state.global_step += 1
        self.state.num_input_tokens_seen += self.tokens_per_step
        return self._step_metrics(loss, grad_norm, lrs, time.perf_counter() - started, noise)

    def _forward_backward(self) -> float:
        """``grad_accum`` micro-steps; returns the loss averaged over micro-steps and processes. A pending stop
        signal travels in the same reduction, so every process learns of it at the same step."""
        loss_sum = torch.zeros((), device=self.device)
        z_sum = torch.zeros((), device=self.device)
        extra = {"z_loss": self.args.z_loss} if self.args.z_loss else {}
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
        if not self.accelerator.sync_gradients:
            # Never silent: without a sync micro-step the wrapped optimizer's step() and zero_grad() do nothing.
            raise RuntimeError(f"Step {self.state.global_step + 1}: the last of {self.grad_accum} micro-steps did not "
                               f"synchronise gradients (Accelerate's micro-step counter is {self.accelerator.step}); "
                               "the optimizer would silently skip this update.")
        signal_flag = torch.tensor(float(self.signals.requested), device=self.device)
        with self.clock.measure("forward_backward"):  # .item() waits for the kernels: their time lands here
            totals = self.accelerator.reduce(torch.stack([(loss_sum - z_sum) / self.grad_accum,
                                                          z_sum / self.grad_accum, signal_flag]), "sum")
            self.stop_signalled = bool(totals[2].item() > 0)
        self.z_loss = totals[1].item() / self.accelerator.num_processes
        return totals[0].item() / self.accelerator.num_processes  # the cross-entropy (without the z term)

    def _clip(self) -> float:
        """Total gradient norm before clipping (clipping is skipped when grad_clip is 0)."""
        max_norm = self.args.grad_clip if self.args.grad_clip > 0 else float("inf")
        return float(self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm))

    def _step_metrics(self, loss: float, grad_norm: float, lrs: list[float], elapsed: float,
                      noise: dict | None = None) -> dict:
        tokens_per_sec = self.tokens_per_step / elapsed
        metrics = {Tags.TRAIN_LOSS: loss, Tags.TRAIN_LR: lrs[0], Tags.TRAIN_GRAD_NORM: grad_norm,
                   Tags.TRAIN_TOKENS_SEEN: float(self.state.num_input_tokens_seen),
                   Tags.TRAIN_TOKENS_PER_SEC: tokens_per_sec, Tags.TRAIN_STEP_TIME_MS: elapsed * 1000,
                   Tags.TRAIN_EPOCH: float(self.train_loader.epoch),
                   Tags.TRAIN_SKIPPED_UPDATES: float(self.skipped_updates)}
        if len(lrs) > 1:
            metrics[Tags.TRAIN_LR_MUON] = lrs[1]
        if self.args.z_loss:
            metrics[Tags.TRAIN_Z_LOSS] = self.z_loss
        if self.args.grad_clip > 0:
            metrics[Tags.TRAIN_GRAD_CLIP] = self.args.grad_clip
        metrics.update({Tags.TIME + f"{name}_ms": 1000 * seconds for name, seconds in self.clock.take().items()
                        if name in PER_STEP})
        if noise:
            metrics.update({Tags.NOISE_SCALE_TOKENS: noise["b_simple"], Tags.NOISE_GRAD_SQ: noise["g_sq"],
                            Tags.NOISE_TRACE: noise["trace"], Tags.NOISE_TOKENS_PER_STEP: float(self.tokens_per_step)})
        if self.peak_flops:
            metrics[Tags.TRAIN_MFU] = self.flops_per_token * tokens_per_sec / (self.peak_flops *
                                                                               self.accelerator.num_processes)
        return metrics

    def _raise_if_stopped(self) -> None:
        """A policy put an error into ``control.stop_error``: raise it, saying where the last good checkpoint is."""
        if (error := self.control.stop_error) is not None:
            self.control.stop_error = None
            raise error.located(self.checkpointer.latest_note())

    def _record_interventions(self) -> None:
        """The spike guard's new records: to ``interventions.jsonl`` at once, to TensorBoard at their step (a
        rollback's at the step it returned to, after the abandoned steps are purged: see ``rollback``)."""
        if self.spike_guard is None:
            return
        for step, armed, message in self.spike_guard.take_status():
            self.accelerator.print(message)
            if self.accelerator.is_main_process:
                self.accelerator.log({Tags.SPIKE_GUARD_ARMED: armed}, step=step)
        for record in self.spike_guard.take_pending():
            if self.accelerator.is_main_process:
                append_jsonl(self.layout.interventions_file, record)
            if record["action"] != "rollback":
                self._log_intervention(record, record["step"])

    def _log_intervention(self, record: dict, step: int) -> None:
        if self.accelerator.is_main_process:
            self.accelerator.log({Tags.SPIKE_GUARD_ACTION: SPIKE_ACTIONS[record["action"]]}, step=step)
            self.log.log_text(Tags.INTERVENTIONS_TEXT, json.dumps(record, default=float), step)

    def rollback(self, request: dict) -> None:
        """Carry out the spike guard's rollback: restore the checkpoint before the spike (keeping the current
        settings and the guard's record), set the newer checkpoints and the records of the abandoned steps aside as
        an abandoned branch, move the data past the batches that followed, make TensorBoard drop the abandoned
        steps, and record again any setting that differs from the checkpoint's (it applies from there on)."""
        escalation = self.spike_guard.escalation_state()
        checkpoint = Path(request["checkpoint"])
        self.checkpointer.load(checkpoint)
        self.spike_guard.restore_escalation(escalation)
        apply_hyperparameters(self.optimizers, self.args)  # a checkpoint from before a changed resume keeps the new
        for scheduler, peak in zip(self.schedulers, peak_lrs(self.args)):
            set_schedule(scheduler, self.schedule, peak)
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
        changes = setting_changes(saved_run_config(checkpoint), self.config.to_dict())
        if changes:
            ResumePlan(step=step, checkpoint=checkpoint, changes=changes,
                       reason="a spike-guard rollback to a checkpoint written under other settings").log(self)
        self._log_intervention(self.spike_guard.interventions[-1], step)
        self.accelerator.print(f"Spike guard: rolled back to {checkpoint} (step {step}); the data resumes "
                               f"{request['skip_steps']} steps' worth of batches later"
                               + (f"; the abandoned checkpoints and records are in {branch}" if branch else "") + ".")

    @property
    def skipped_updates(self) -> int:
        return self.skip_budget.skipped

    @property
    def checkpoints(self):
        return self.checkpointer.manager

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
        if self.accelerator.is_main_process:
            self.log.log_text(Tags.SAMPLES, "\n\n".join(f"{i}. {t}" for i, t in enumerate(texts)),
                              self.state.global_step)
        return texts

    def run_hellaswag(self) -> dict:
        metrics = self.hellaswag(self.raw_model, self.tokenizer, self.accelerator)
        if metrics:
            self.log.log_metrics({Tags.HELLASWAG_ACC: metrics["acc"], Tags.HELLASWAG_ACC_NORM: metrics["acc_norm"]})
        return metrics

    def save_checkpoint(self) -> Path:
        path = self.checkpointer.save(self.state.global_step)
        self._fire("on_save", checkpoint_dir=path)
        return path

    def save_final_model(self) -> Path:
        return self.checkpointer.save_final()

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

    def _carry_out(self, metrics: dict) -> None:
        if self.control.should_log:
            with self.clock.measure("logging"):
                self.log.log_metrics(metrics)
        if self.control.should_evaluate:
            with self.clock.measure("evaluation"):
                self.evaluate()
        if self.control.should_run_hellaswag:
            with self.clock.measure("hellaswag"):
                self.run_hellaswag()
        if self.control.should_save:
            with self.clock.measure("checkpoint"):
                self.save_checkpoint()  # before sampling: nothing optional runs between a step and its checkpoint
        if self.control.should_sample:
            try:
                with self.clock.measure("sampling"):
                    self.sample()
            except Exception as error:  # samples are for looking at: never worth the run
                warnings.warn(f"Step {self.state.global_step}: sampling failed ({type(error).__name__}: {error}); "
                              "training continues.", stacklevel=1)
        occasional = {Tags.TIME + f"{name}_ms": 1000 * seconds for name, seconds in self.clock.take().items()
                      if seconds > 0 and name not in PER_STEP and name != "logging"}
        if occasional and self.accelerator.is_main_process:
            self.accelerator.log(occasional, step=self.state.global_step)

    # ------------------------------------------------------------------------------------------- run
    def resume(self, spec: str) -> Path:
        """Restore a checkpoint (moments, step, data position, RNG, callbacks) and apply the current arguments'
        hyperparameters and schedule to it (``resumption.plan_resume``), saying what changed."""
        path = self.checkpointer.manager.resolve(spec)
        self.resume_plan = plan_resume(self, path)
        return path

    def train(self) -> TrainerState:
        if self.accelerator.is_main_process:
            recover_folder(self.layout.final_dir)
        if self.args.resume_from_checkpoint:
            resumed = self.resume(self.args.resume_from_checkpoint)
            self.accelerator.print(f"Resumed from {resumed} at step {self.state.global_step}.")
        self._init_tracking()
        if self.resume_plan is not None:
            self.resume_plan.log(self)
        self._fire("on_train_begin")
        started, first_step = time.perf_counter(), self.state.global_step
        self.session_started = started
        bar = tqdm(total=self.state.max_steps, initial=self.state.global_step, desc="training", unit="step",
                   disable=not (self.accelerator.is_main_process and self.config.logging.progress_bar),
                   dynamic_ncols=True)
        self.signals.install()
        try:
            while self.state.global_step < self.state.max_steps and not self.control.should_training_stop:
                self.control._new_step()
                self._fire("on_step_begin")
                metrics = self.training_step()
                self._fire("on_step_end")
                metrics.update(self.log.take_step_metrics())  # what callbacks added during this step
                if self.control.rollback is not None:
                    self.rollback(self.control.rollback)
                    bar.n = self.state.global_step
                    bar.refresh()
                    continue
                if self.stop_signalled:
                    self.control.should_save = True
                self._carry_out(metrics)
                self._raise_if_stopped()
                bar.set_postfix(self._progress_fields(metrics), refresh=False)  # before update: drawn once
                bar.update(1)
                if self.stop_signalled:
                    self._stop_for_signal()
        finally:
            self.signals.uninstall()
            bar.close()
            self.elapsed_seconds = time.perf_counter() - started
            self.steps_this_session = self.state.global_step - first_step
        self.stopped_early = self.state.global_step < self.state.max_steps
        if self.spike_guard is not None and (note := self.spike_guard.end_note(self.state.global_step)):
            self.accelerator.print(note)
        self.save_final_model()
        self.accelerator.wait_for_everyone()
        self._fire("on_train_end")  # after the final save, so callbacks (e.g. the Hub push) find it
        return self.state

    def _stop_for_signal(self) -> None:
        """After a SIGTERM/SIGINT: the step is finished and its checkpoint saved; tell the user how to go on."""
        checkpoint = self.checkpointer.manager.path_for(self.state.global_step)
        what = self.signals.name or "a stop signal (on another process)"
        raise Preempted(f"Stopped by {what} after step {self.state.global_step} of {self.state.max_steps}: checkpoint "
                        f"{checkpoint}.", resume_command(self.args.output_dir))

    def _init_tracking(self) -> None:
        run_name = self.config.logging.run_name or self.output_dir.name
        # After a resume, TensorBoard readers drop what an earlier writer logged at steps after the checkpoint
        # (the tail of a crashed run, or an abandoned branch), so the logs show one history.
        init_kwargs = {TRACKER: {"purge_step": self.resumed_step + 1}} if self.resumed_step is not None else {}
        self.accelerator.init_trackers(TENSORBOARD_PROJECT, init_kwargs=init_kwargs)  # events in the run folder
        self.log.log_layout()
        self.log.log_hparams(self.config.flat())
        if self.accelerator.is_main_process:
            self.effective_config().save(self.layout.config_file)
            self.log.log_text(Tags.CONFIG_TEXT, f"run `{run_name}`\n\n```yaml\n{self.layout.config_file.read_text()}```",
                              0)
            self.accelerator.log({Tags.RUN_GRAD_ACCUM_STEPS: self.grad_accum,
                                  Tags.RUN_TOKENS_PER_STEP: self.tokens_per_step,
                                  Tags.RUN_NUM_PROCESSES: self.accelerator.num_processes,
                                  Tags.RUN_GRAD_CLIP: self.args.grad_clip,
                                  Tags.RUN_PARAMETERS: self.num_parameters,
                                  Tags.RUN_VOCAB_SIZE: self.raw_model.config.vocab_size}, step=0)

    def effective_config(self) -> RunConfig:
        """The configuration as the run carries it out: its ``max_steps`` is the schedule's end (a cool-down moves
        it), so config.yaml describes the run that trained."""
        if self.config.train.max_steps == self.state.max_steps:
            return self.config
        return replace(self.config, train=replace(self.config.train, max_steps=self.state.max_steps))

    def _fire(self, event: str, **kwargs):
        category = "callbacks" if event in STEP_EVENTS else "logging" if event == "on_log" else None
        with self.clock.measure(category) if category else contextlib.nullcontext():
            self.control = self.callbacks.fire(event, self.args, self.state, self.control, logger=self.log,
                                               **kwargs)
        return self.control

    def _progress_fields(self, metrics: dict) -> dict:
        fields = {"loss": f"{metrics[Tags.TRAIN_LOSS]:.4f}"}
        if (last_val := self.log.last(Tags.VAL_LOSS)) is not None:
            fields["val"] = f"{last_val:.4f}"
        fields.update(lr=f"{metrics[Tags.TRAIN_LR]:.2e}", tok_s=f"{metrics[Tags.TRAIN_TOKENS_PER_SEC]:,.0f}")
        return fields

    def last_logged(self, tag: str) -> float | None:
        return self.log.last(tag)

    # ------------------------------------------------------------------------------------------- teardown
    def release_run_folder(self) -> None:
        self.lock.release()

    def _finish_trackers(self) -> None:
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

