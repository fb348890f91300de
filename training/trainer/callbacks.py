"""The hook system: transformers' ``TrainerCallback`` / ``TrainerState`` / ``TrainerControl`` / ``CallbackHandler``,
and the contract between the loop and its callbacks.

The loop (``training.trainer.trainer``) fires the events in ``EVENTS``; callbacks decide policy by setting ``control``
flags, which the loop carries out. ``FlowCallback`` holds the schedule (log / evaluate / sample / save every N steps,
stop at max_steps or at a target validation loss), so the loop has no schedule of its own.

What a callback may use, besides HF's ``args``, ``state``, ``control``, ``model``, ``optimizer`` and
``lr_scheduler``, is stated once: every event receives ``logger=``, an object with the ``RunLogger`` methods (log
scalars, add metrics to the step's log line, histograms, text). Callbacks never see the trainer. Extra keyword
arguments: ``on_pre_optimizer_step`` gets ``loss=`` and ``grad_norm=`` (before clipping); ``on_save`` gets
``checkpoint_dir=`` (the committed checkpoint folder). A callback's cadence is given to it at construction.

Differences from the HF Trainer, for callbacks written against it:
- ``args`` is this project's ``TrainArguments``; it carries the HF names callbacks read (``output_dir``,
  ``max_steps``, ``eval_strategy``, ``eval_steps``, ``save_steps``, ``metric_for_best_model``,
  ``greater_is_better``, ``load_best_model_at_end``) but not every ``TrainingArguments`` field.
- ``on_evaluate`` metrics use HF names (``eval_loss``, ``eval_perplexity``); ``state.best_metric`` is the best
  validation loss, updated after ``on_evaluate`` as in HF.
- ``model`` is the unwrapped, uncompiled model.
- Extra control fields: ``should_sample``, ``should_run_hellaswag``, ``should_skip_update``, ``stop_error`` (a
  policy's reason to stop, raised by the loop) and ``rollback`` (the spike guard's request to go back to a
  checkpoint).
"""

import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import yaml
from transformers import TrainerCallback, TrainerControl, TrainerState  # noqa: F401  (re-exported)
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, ExportableState

# The events the loop fires, in the order of one run; ``RunCallbackHandler.fire`` refuses any other name.
EVENTS = (
    "on_init_end", "on_train_begin", "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end",
    "on_evaluate", "on_log", "on_save", "on_train_end",
)


@runtime_checkable
class RunLogger(Protocol):
    """What callbacks may do to the run's logs (passed to every event as ``logger=``)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Scalars to TensorBoard and the log history now (``step`` defaults to the last finished step)."""

    def add_step_metrics(self, metrics: dict[str, float]) -> None:
        """Scalars added to the current step's log line (written when the loop logs that step)."""

    def log_histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        """A TensorBoard histogram (main process only; a no-op elsewhere)."""

    def log_text(self, tag: str, text: str, step: int) -> None:
        """A TensorBoard text summary (main process only; a no-op elsewhere)."""


def is_due(step: int, every: int, first: bool = False) -> bool:
    """The one cadence rule: ``step`` (1-based) is a multiple of ``every`` (0 disables); with ``first`` step 1
    is always due (diagnostics want the very first step)."""
    return every > 0 and (step % every == 0 or (first and step == 1))


@dataclass
class GPTTrainerControl(TrainerControl):
    """``TrainerControl`` plus the decisions this trainer carries out besides log/evaluate/save/stop."""

    should_sample: bool = False
    should_run_hellaswag: bool = False
    should_skip_update: bool = False
    # A policy that stops the run puts its error here (a ``policies.RunStopped``); the loop raises it.
    stop_error: Exception | None = None
    # The spike guard asks the loop to roll back: {"checkpoint": path, "skip_steps": n, "reason": str}.
    rollback: dict | None = None

    def _new_step(self):
        super()._new_step()
        self.should_sample = False
        self.should_run_hellaswag = False
        self.should_skip_update = False
        self.rollback = None


class FlowCallback(DefaultFlowCallback):
    """The default schedule (replaces HF's ``DefaultFlowCallback``) for step-based pretraining: reads the
    intervals from ``args`` (``eval_every``, ``hellaswag_every``, ``sample_every``, ``save_every``,
    ``target_val_loss``) and ``log_every``; the last step always evaluates, samples and saves."""

    def __init__(self, log_every: int = 1):
        self.log_every = log_every

    def on_step_end(self, args, state, control, **kwargs):
        step, last = state.global_step, state.global_step >= state.max_steps
        control.should_log = step == 1 or is_due(step, self.log_every) or last
        control.should_evaluate = is_due(step, args.eval_every) or (last and args.eval_every > 0)
        control.should_run_hellaswag = is_due(step, args.hellaswag_every) or (last and args.hellaswag_every > 0)
        control.should_sample = is_due(step, args.sample_every) or (last and args.sample_every > 0)
        control.should_save = is_due(step, args.save_every) or last
        if last:
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        return control  # the stream has no epoch-based schedule

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if args.target_val_loss is not None and loss is not None and loss <= args.target_val_loss:
            control.should_training_stop = True
            control.should_save = True
        return control


class RunCallbackHandler(CallbackHandler):
    """``CallbackHandler`` whose events forward extra keyword arguments (``logger``, ``grad_norm``...) and that
    fires only the events in ``EVENTS``."""

    def fire(self, event: str, args, state, control, **kwargs):
        if event not in EVENTS:
            raise ValueError(f"Unknown callback event {event!r}; the loop fires {', '.join(EVENTS)}.")
        return self.call_event(event, args, state, control, **kwargs)

    def stateful(self) -> dict[str, TrainerCallback]:
        """Callbacks with state to checkpoint, keyed by class name (numbered when repeated)."""
        out, seen = {}, {}
        for callback in self.callbacks:
            if hasattr(callback, "state_dict") or isinstance(callback, ExportableState):
                name = type(callback).__name__
                seen[name] = seen.get(name, 0) + 1
                out[name if seen[name] == 1 else f"{name}_{seen[name]}"] = callback
        return out

    def callback_states(self) -> dict:
        states = {}
        for key, callback in self.stateful().items():
            states[key] = callback.state_dict() if hasattr(callback, "state_dict") else callback.state()
        return states

    def load_callback_states(self, states: dict) -> None:
        for key, callback in self.stateful().items():
            if key not in states:
                continue
            if hasattr(callback, "load_state_dict"):
                callback.load_state_dict(states[key])
            else:  # HF ExportableState: {"args": ..., "attributes": ...}
                for attribute, value in states[key].get("attributes", {}).items():
                    setattr(callback, attribute, value)


# ----------------------------------------------------------------------------------------------- by name
# Built-in callbacks by name: import paths resolved only when a run asks for them, so building the loop imports
# neither the diagnostics nor the Hub code unless they are used.
REGISTRY = {
    "grad_norm": "training.diagnostics.callbacks.GradNormCallback",
    "layer_ratios": "training.diagnostics.callbacks.LayerRatioCallback",
    "histograms": "training.diagnostics.callbacks.HistogramCallback",
    "spike_detector": "training.diagnostics.callbacks.SpikeDetectorCallback",
    "early_stopping": "transformers.trainer_callback.EarlyStoppingCallback",
    "push_to_hub": "training.hub.callback.HubPushCallback",
}


def resolve_callback_class(name: str) -> type:
    """A registered name or an import path ``package.module.ClassName`` -> the class."""
    path = REGISTRY.get(name, name)
    if "." not in path:
        raise ValueError(f"Unknown callback {name!r}; built in: {', '.join(sorted(REGISTRY))}, or give an import "
                         "path such as mypackage.callbacks.MyCallback.")
    module, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Callback {name!r}: cannot import {path} ({error}).") from error


def parse_callback_spec(spec) -> tuple[str, dict]:
    """``"name"`` / ``"name:key=value,key=value"`` / ``{"name": ..., key: value}`` -> (name, kwargs)."""
    if isinstance(spec, dict):
        spec = dict(spec)
        return spec.pop("name"), spec
    name, _, rest = str(spec).partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Callback option {item!r} in {spec!r} must look like key=value.")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name.strip(), kwargs


def build_callback(spec, defaults: dict | None = None) -> TrainerCallback:
    """A callback from ``spec`` (see ``parse_callback_spec``). ``defaults`` are keyword arguments the run supplies
    (e.g. the diagnostics cadence ``every``) for those the class accepts and the spec does not set."""
    name, kwargs = parse_callback_spec(spec)
    cls = resolve_callback_class(name)
    accepted = _accepted_arguments(cls)
    _check_argument_types(name, cls, kwargs)
    for key, value in (defaults or {}).items():
        if key in accepted:
            kwargs.setdefault(key, value)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"Callback {name!r} does not accept {kwargs}: {error}") from error


def _check_argument_types(name: str, cls: type, kwargs: dict) -> None:
    """Options given as text (``spike_detector:z_threshold=abc``) against the annotated types of the callback's
    constructor, so a typo fails now rather than as a TypeError in the middle of training."""
    from ..config_fields import coerce_value

    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations of a user's class: nothing to check against
        return
    for key, value in list(kwargs.items()):
        if key in hints and hints[key] in (int, float, bool, str):
            coerced, problem = coerce_value(key, value, hints[key])
            if problem:
                raise ValueError(f"Callback {name!r}: {problem}.")
            kwargs[key] = coerced


def _accepted_arguments(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
