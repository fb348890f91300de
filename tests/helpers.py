"""Helpers shared by the training tests (importable as ``tests.helpers`` by subprocess runs too)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.loop.arguments import DataArguments, LoggingArguments, ModelArguments, RunConfig, TrainArguments

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]


def offline_env() -> dict:
    """The environment of a new user's machine without network: no tokenizer cache, the Hub offline."""
    env = {key: value for key, value in os.environ.items() if key != "TIKTOKEN_CACHE_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def tiny_run_config(output_dir, data=None, **train_overrides) -> RunConfig:
    """2 layers, width 32, the real 50304 vocabulary, T=32: a few milliseconds per step on CPU."""
    model_overrides = {k: train_overrides.pop(k) for k in list(train_overrides) if k in ModelArguments.__dataclass_fields__}
    logging_overrides = {k: train_overrides.pop(k) for k in list(train_overrides)
                         if k in LoggingArguments.__dataclass_fields__}
    data_overrides = {k: train_overrides.pop(k) for k in list(train_overrides) if k in DataArguments.__dataclass_fields__}
    train = dict(output_dir=str(output_dir), cpu=True, mixed_precision="no", seq_len=32, micro_batch_size=4,
                 total_batch_tokens=128, max_steps=10, max_lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_every=0,
                 eval_tokens=1024, sample_every=0, save_every=0, keep_last=0, callbacks=[])
    train.update(train_overrides)
    train["warmup_steps"] = min(train["warmup_steps"], train["max_steps"])
    model = dict(n_layer=2, n_head=4, n_embd=32)
    model.update(model_overrides)
    logging = dict(progress_bar=False, diagnostics_every=5)
    logging.update(logging_overrides)
    return RunConfig(model=ModelArguments(**model), data=DataArguments(data=str(data) if data else None,
                                                                        **data_overrides),
                     train=TrainArguments(**train), logging=LoggingArguments(**logging))


def config_to_argv(config: RunConfig) -> list[str]:
    argv = []
    for group in config.to_dict().values():
        for key, value in group.items():
            if value is None:
                continue
            if isinstance(value, list):
                argv += [f"--{key}", *map(str, value)] if value else []
            else:
                argv += [f"--{key}", str(value)]
    return argv


def run_pretrain(argv, launcher=None, timeout=600, check=True, env=None):
    command = (launcher or [sys.executable]) + [str(REPO / "scripts" / "pretrain.py"), *argv]
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def read_scalars(logdir) -> dict[str, dict[int, float]]:
    """All scalar tags of a run, last value per step (resumed runs write steps twice)."""
    from training.analysis.runs import read_run_scalars

    return read_run_scalars(logdir)


class KillAtStep(TrainerCallback):
    """SIGKILLs its own process at the end of a step: a crash in the middle of training."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class Recorder(TrainerCallback):
    """Records every event with the step it saw."""

    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            def record(args, state, control, **kwargs):
                self.events.append((name, state.global_step))
            return record
        return super().__getattribute__(name)


class StopAtStep(TrainerCallback):
    """Written against transformers' TrainerCallback API only."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


class PoisonStep(TrainerCallback):
    """Makes the forward pass of one step produce NaN (through a hook on the token embedding)."""

    def __init__(self, step, permanent=False):
        self.step, self.permanent, self.handle = step, permanent, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            self.handle = model.transformer.wte.register_forward_hook(lambda m, i, o: o * float("nan"))

    def on_step_end(self, args, state, control, **kwargs):
        if self.handle is not None and not self.permanent:
            self.handle.remove()
            self.handle = None


def grads_snapshot(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def load_final_weights(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "final" / "model.safetensors"))


def train(config, callbacks=None, **kwargs):
    """Build a Trainer, run it, tear it down; returns the trainer for inspection."""
    from training.loop.trainer import Trainer

    trainer = Trainer(config, callbacks=callbacks, **kwargs)
    try:
        trainer.train()
    finally:
        trainer.close()
    return trainer


class FreezeMatrix(TrainerCallback):
    """Freezes one weight matrix when training begins (a planted 'frozen layer')."""

    def __init__(self, name: str = "h.0.attn.c_attn.weight"):
        self.name = name

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        dict(model.transformer.named_parameters())[self.name].requires_grad_(False)


class VanishingGradient(TrainerCallback):
    """A planted vanishing gradient through depth: the gradient reaching block i is scaled by
    ``decades_per_block`` decades for every block between it and the top one, the way a network without residual
    paths or normalisation loses its gradient on the way down. Under Adam a scaled gradient gives the same step
    until it falls below --adam_epsilon, so the lowest blocks (gradients ~1e-12 here) barely move."""

    def __init__(self, decades_per_block: float = 3.0):
        self.decades_per_block = decades_per_block

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        blocks = model.transformer.h
        for index, block in enumerate(blocks):
            factor = 10.0 ** (-self.decades_per_block * (len(blocks) - 1 - index))
            for param in block.parameters():
                param.register_hook(lambda grad, factor=factor: grad * factor)
