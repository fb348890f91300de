"""The hook system: transformers' ``TrainerCallback`` / ``TrainerState`` / ``TrainerControl`` / ``CallbackHandler``,
and the contract between the loop and its callbacks.

The loop (``training.trainer.trainer``) fires the events in ``EVENTS``. Each component keeps its own cadence
(logging, validation, HellaSwag, samples, checkpoints every N steps and at the end); a callback asks for more through
``control`` (``should_log``, ``should_evaluate``, ``should_save``, ``should_training_stop``, ``should_skip_update``),
which the loop carries out after the step.

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
- Extra control fields: ``should_skip_update`` and ``stop_error`` (a reason to stop, raised by the loop after the
  step's logs and checkpoint). The guards (non-finite steps, the skip budget, the spike guard) are not callbacks:
  the loop asks them directly (``training/guards``).
"""

import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState  # noqa: F401  (re-exported)
from transformers.trainer_callback import CallbackHandler, ExportableState

from ..callback_spec import parse_callback_spec
from ..errors import ConfigError

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


@dataclass
class GPTTrainerControl(TrainerControl):
    """``TrainerControl`` plus a callback's request to skip this step's update (the spike_detector's
    ``skip_updates``) and to stop with an error (``RunStopped``: the loop adds where the last good checkpoint is)."""

    should_skip_update: bool = False
    stop_error: Exception | None = None

    def _new_step(self):
        super()._new_step()
        self.should_skip_update = False


class RunCallbackHandler(CallbackHandler):
    """``CallbackHandler`` whose events forward extra keyword arguments (``logger``, ``grad_norm``...) and that
    fires only the events in ``EVENTS``. The cadences HF's ``DefaultFlowCallback`` would set are the components'
    own (trainer.py's ``after_step``), so its absence is not warned about."""

    def __init__(self, callbacks, model, processing_class, optimizer, lr_scheduler):
        self.callbacks = []
        for callback in callbacks:
            self.add_callback(callback)
        self.model, self.processing_class = model, processing_class
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.train_dataloader = self.eval_dataloader = None

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

    def state_dict(self) -> dict:
        return self.callback_states()

    def load_state_dict(self, states: dict) -> None:
        self.load_callback_states(states)

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
        raise ConfigError(f"Unknown callback {name!r}; built in: {', '.join(sorted(REGISTRY))}, or give an import "
                         "path such as mypackage.callbacks.MyCallback.")
    module, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"Callback {name!r}: cannot import {path} ({error}).") from error


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
        raise ConfigError(f"Callback {name!r} does not accept {kwargs}: {error}") from error


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
                raise ConfigError(f"Callback {name!r}: {problem}.")
            kwargs[key] = coerced


def _accepted_arguments(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
