#!/usr/bin/env python
"""Overhead of the training loop: time per optimizer step through Trainer (loader, accumulate, reduce, clip,
callbacks, scheduler, TensorBoard logging every step) vs a bare forward/backward/clip/step on the same model and
batch. Target: < 3% on CPU tiny configs.

    python bench/loop_overhead.py [--steps 30] [--callbacks grad_norm layer_ratios]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from bench.common import machine, table  # noqa: E402
from modeling import GPTConfig, GPTForCausalLM  # noqa: E402
from training.config import DataArguments, LoggingArguments, ModelArguments, RunConfig, TrainArguments  # noqa
from training.trainer.trainer import Trainer  # noqa: E402

B, T, LAYERS, WIDTH = 8, 128, 4, 128


class FixedBatch:
    def __init__(self, x, y):
        self.x, self.y, self.epoch = x, y, 0

    def next_batch(self):
        return self.x, self.y

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class StepClock(TrainerCallback):
    def __init__(self, warmup):
        self.warmup, self.marks = warmup, {}

    def on_step_end(self, args, state, control, **kwargs):
        self.marks[state.global_step] = time.perf_counter()


def model_and_batch():
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(n_layer=LAYERS, n_head=4, n_embd=WIDTH, n_positions=T))
    x = torch.randint(0, 50257, (B, T))
    return model, x, torch.roll(x, -1, dims=1)


def loop_step_seconds(steps, warmup, callbacks, diagnostics_every, out, extra_callbacks=(), grad_accum=1,
                      prepare_trainer=None):
    """Seconds per optimizer step of the real loop on a fixed batch; ``prepare_trainer(trainer)`` runs before
    training (a benchmark's hook to time parts of it)."""
    model, x, y = model_and_batch()
    config = RunConfig(ModelArguments(n_layer=LAYERS, n_head=4, n_embd=WIDTH), DataArguments(),
                       TrainArguments(output_dir=out, cpu=True, mixed_precision="no", seq_len=T, micro_batch_size=B,
                                      total_batch_tokens=B * T * grad_accum, max_steps=steps + warmup, warmup_steps=2,
                                      eval_every=0, sample_every=0, save_every=0, callbacks=callbacks),
                       LoggingArguments(progress_bar=False, diagnostics_every=diagnostics_every))
    clock = StepClock(warmup)
    trainer = Trainer(config, callbacks=[clock, *extra_callbacks], model=model, train_loader=FixedBatch(x, y))
    if prepare_trainer is not None:
        prepare_trainer(trainer)
    trainer.train()
    trainer.close()
    return (clock.marks[steps + warmup] - clock.marks[warmup]) / steps


def bare_step_seconds(steps, warmup):
    model, x, y = model_and_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    model.train()

    def step():
        loss = model(x, shift_labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--callbacks", nargs="*", default=[])
    parser.add_argument("--diagnostics_every", type=int, default=25)
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    loop, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # interleaved, so machine noise hits both alike
            bare.append(bare_step_seconds(args.steps, args.warmup))
            loop.append(loop_step_seconds(args.steps, args.warmup, args.callbacks, args.diagnostics_every,
                                          f"{tmp}/run{repeat}"))
    loop_s, bare_s = statistics.median(loop), statistics.median(bare)
    print(f"machine: {machine()}\n")
    print(table(["config", "callbacks", "bare ms/step", "loop ms/step", "bare tok/s", "loop tok/s", "overhead"],
                [[f"{LAYERS}L/{WIDTH}W B={B} T={T} fp32", " ".join(args.callbacks) or "(flow only)",
                  f"{bare_s * 1e3:.1f}", f"{loop_s * 1e3:.1f}", f"{B * T / bare_s:,.0f}", f"{B * T / loop_s:,.0f}",
                  f"{(loop_s / bare_s - 1):+.2%}"]]))


if __name__ == "__main__":
    main()
