"""The hook system: transformers' ``TrainerCallback`` / ``TrainerState`` / ``TrainerControl`` / ``CallbackHandler``.

The loop (``training.trainer``) fires the standard events; callbacks decide policy by setting ``control`` flags,
which the loop carries out. ``FlowCallback`` holds the schedule (log / evaluate / sample / save every N steps,
stop at max_steps or at a target validation loss), so the loop has no schedule of its own.

Differences from the HF Trainer, for callbacks written against it:
- ``args`` is this project's ``TrainArguments``; it carries the HF names callbacks read (``output_dir``,
  ``max_steps``, ``eval_strategy``, ``eval_steps``, ``save_steps``, ``metric_for_best_model``,
  ``greater_is_better``, ``load_best_model_at_end``) but not every ``TrainingArguments`` field.
- ``on_evaluate`` metrics use HF names (``eval_loss``, ``eval_perplexity``); ``state.best_metric`` is the best
  validation loss, updated after ``on_evaluate`` as in HF.
- Every event also receives ``trainer=`` (the running ``Trainer``); ``on_pre_optimizer_step`` gets
  ``grad_norm=`` (before clipping) and ``loss=``; ``model`` is the unwrapped, uncompiled model.
- Extra control flags: ``should_sample``, ``should_run_hellaswag``, ``should_skip_update``.
"""

import importlib
from dataclasses import dataclass

import yaml
from transformers import TrainerCallback, TrainerControl, TrainerState  # noqa: F401  (re-exported)
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, EarlyStoppingCallback, ExportableState

EVENTS = (
    "on_init_end", "on_train_begin", "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end",
    "on_evaluate", "on_log", "on_save", "on_train_end",
)


@dataclass
class GPTTrainerControl(TrainerControl):
    """``TrainerControl`` plus the decisions this trainer carries out besides log/evaluate/save/stop."""

    should_sample: bool = False
    should_run_hellaswag: bool = False
    should_skip_update: bool = False

    def _new_step(self):
        super()._new_step()
        self.should_sample = False
        self.should_run_hellaswag = False
        self.should_skip_update = False


def _every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


class FlowCallback(DefaultFlowCallback):
    """The default schedule (replaces HF's ``DefaultFlowCallback``) for step-based pretraining: reads the
    intervals from ``args`` (``eval_every``, ``hellaswag_every``, ``sample_every``, ``save_every``,
    ``target_val_loss``) and ``log_every``; the last step always evaluates, samples and saves."""

    def __init__(self, log_every: int = 1):
        self.log_every = log_every

    def on_step_end(self, args, state, control, **kwargs):
        step, last = state.global_step, state.global_step >= state.max_steps
        control.should_log = step == 1 or _every(step, self.log_every) or last
        control.should_evaluate = _every(step, args.eval_every) or (last and args.eval_every > 0)
        control.should_run_hellaswag = _every(step, args.hellaswag_every) or (last and args.hellaswag_every > 0)
        control.should_sample = _every(step, args.sample_every) or (last and args.sample_every > 0)
        control.should_save = _every(step, args.save_every) or last
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
    """``CallbackHandler`` whose events forward extra keyword arguments (``trainer``, ``grad_norm``...)."""

    def fire(self, event: str, args, state, control, **kwargs):
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
def _registry() -> dict[str, type]:
    from . import diagnostics

    return {
        "grad_norm": diagnostics.GradNormCallback,
        "layer_ratios": diagnostics.LayerRatioCallback,
        "histograms": diagnostics.HistogramCallback,
        "spike_detector": diagnostics.SpikeDetectorCallback,
        "early_stopping": EarlyStoppingCallback,
    }


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


def build_callback(spec) -> TrainerCallback:
    """A callback from its name (see ``_registry``) or an import path ``package.module.ClassName``."""
    name, kwargs = parse_callback_spec(spec)
    registry = _registry()
    if name in registry:
        cls = registry[name]
    elif "." in name:
        module, _, attribute = name.rpartition(".")
        cls = getattr(importlib.import_module(module), attribute)
    else:
        raise ValueError(f"Unknown callback {name!r}; built in: {', '.join(sorted(registry))}, or give an import "
                         "path such as mypackage.callbacks.MyCallback.")
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"Callback {name!r} does not accept {kwargs}: {error}") from error
