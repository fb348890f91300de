"""Helpers shared by the training tests (importable as ``tests.helpers`` by subprocess runs too)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.config import SECTION_OF, SECTIONS, RunConfig

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]


def offline_env() -> dict:
    """The environment of a new user's machine without network: no tokenizer cache, the Hub offline."""
    env = {key: value for key, value in os.environ.items() if key != "TIKTOKEN_CACHE_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def tiny_run_config(output_dir, data=None, **overrides) -> RunConfig:
    """2 layers, width 32, the real 50304 vocabulary, T=32: a few milliseconds per step on CPU. Any field of any
    section can be overridden by name."""
    values = dict(output_dir=str(output_dir), cpu=True, mixed_precision="no", seq_len=32, micro_batch_size=4,
                  total_batch_tokens=128, max_steps=10, max_lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_every=0,
                  eval_tokens=1024, sample_every=0, save_every=0, keep_last=0, callbacks=[], n_layer=2, n_head=4,
                  n_embd=32, progress_bar=False, diagnostics_every=5, data=str(data) if data else None)
    values.update(overrides)
    values["warmup_steps"] = min(values["warmup_steps"], values["max_steps"])
    unknown = sorted(set(values) - set(SECTION_OF))
    if unknown:
        raise TypeError(f"tiny_run_config: no such setting(s) {unknown}")
    return RunConfig.from_sections({name: cls(**{k: v for k, v in values.items() if SECTION_OF[k] == name})
                                    for name, cls in SECTIONS.items()})


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
    from training.trainer.trainer import Trainer

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


class SlowSteps(TrainerCallback):
    """Sleeps at the end of every step: a run slow enough for another process to act while it trains."""

    def __init__(self, seconds: float = 0.2):
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        import time

        time.sleep(self.seconds)


class SignalAtStep(TrainerCallback):
    """Sends a signal to its own process at the end of a step (``name``: SIGTERM or SIGINT), like a scheduler."""

    def __init__(self, step: int, name: str = "SIGTERM", twice_after: float | None = None):
        self.step, self.name, self.twice_after = step, name, twice_after

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.name))
            if self.twice_after is not None:  # a second signal, later: must exit at once
                import time

                time.sleep(self.twice_after)
                os.kill(os.getpid(), getattr(signal, self.name))


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def corrupt_data_window(shards, out, first_step: int, last_step: int, tokens_per_step: int, seed: int = 0):
    """A copy of a shard folder whose training tokens for steps ``first_step..last_step`` (1-based, one process,
    no shuffling) are random ids: a corrupted stretch of data, as binary garbage tokenized would be. meta.json
    keeps its recorded largest ids (still valid: the ids are < 50257)."""
    import shutil

    import numpy as np

    from training.data.shards import find_shards, open_shard, write_shard_atomic

    shutil.copytree(shards, out)
    start, stop = (first_step - 1) * tokens_per_step, last_step * tokens_per_step + 1
    offset = 0
    rng = np.random.default_rng(seed)
    for shard in find_shards(out, "train"):
        tokens = np.array(open_shard(shard))
        lo, hi = max(start - offset, 0), min(stop - offset, len(tokens))
        if lo < hi:
            tokens[lo:hi] = rng.integers(0, 50257, hi - lo)
            write_shard_atomic(shard, tokens)
        offset += len(tokens)
    return out


class RaiseLearningRate(TrainerCallback):
    """A persistent cause: from ``step`` on, every update uses ``factor`` x the scheduled learning rate."""

    def __init__(self, step: int, factor: float = 30.0):
        self.step, self.factor = step, factor

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step + 1 >= self.step:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * self.factor
