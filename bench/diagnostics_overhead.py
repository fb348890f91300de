#!/usr/bin/env python
"""Per-step overhead of the diagnostics averaged over a run at the default cadence (every 25 steps): the callbacks
(grad_norm + layer_ratios) against the same loop without them, and the gradient noise scale's probe (one squared
norm of the first micro-batch's gradient and the estimate's update, with 2 accumulation steps) timed inside the
loop. Target: < 2% of step time.

    python bench/diagnostics_overhead.py [--steps 50] [--diagnostics_every 25]
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import time  # noqa: E402

from transformers import TrainerCallback  # noqa: E402

from bench.common import machine, table  # noqa: E402
from bench.loop_overhead import LAYERS, WIDTH, B, T, loop_step_seconds  # noqa: E402
from training.diagnostics.callbacks import GradNormCallback, LayerRatioCallback  # noqa: E402


class Timed(TrainerCallback):
    """Delegates every event to ``inner`` and adds up the time spent in it."""

    def __init__(self, inner):
        self.inner, self.spent = inner, [0.0]

    @property
    def seconds(self) -> float:
        return self.spent[0]

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return _timed(getattr(object.__getattribute__(self, "inner"), name),
                          object.__getattribute__(self, "spent"))
        return object.__getattribute__(self, name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--diagnostics_every", type=int, default=25)
    args = parser.parse_args(argv)
    plain, measured, inside = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            plain.append(loop_step_seconds(args.steps, args.warmup, [], args.diagnostics_every, f"{tmp}/a{repeat}"))
            hooks = [Timed(GradNormCallback(args.diagnostics_every)), Timed(LayerRatioCallback(args.diagnostics_every))]
            measured.append(loop_step_seconds(args.steps, args.warmup, [], args.diagnostics_every, f"{tmp}/b{repeat}",
                                              extra_callbacks=hooks))
            inside.append(sum(h.seconds for h in hooks) / (args.steps + args.warmup))
    plain_s, diag_s, hook_s = statistics.median(plain), statistics.median(measured), statistics.median(inside)
    accumulated_s, probe_s = noise_probe_seconds(args)
    print(f"machine: {machine()}\n")
    print(table(["config", "cadence", "steps", "without ms/step", "with ms/step", "wall-clock difference",
                 "time in diagnostics hooks / step"],
                [[f"{LAYERS}L/{WIDTH}W B={B} T={T} fp32", f"every {args.diagnostics_every}", args.steps,
                  f"{plain_s * 1e3:.1f}", f"{diag_s * 1e3:.1f}", f"{(diag_s / plain_s - 1):+.2%}",
                  f"{hook_s * 1e3:.2f} ms ({hook_s / plain_s:.2%})"]]))
    print()
    print(table(["config", "cadence", "steps", "ms/step", "time in the noise-scale probe / step"],
                [[f"{LAYERS}L/{WIDTH}W B={B} T={T} fp32, 2 accumulation steps", f"every {args.diagnostics_every}",
                  args.steps, f"{accumulated_s * 1e3:.1f}",
                  f"{probe_s * 1e3:.3f} ms ({probe_s / accumulated_s:.3%})"]]))


def noise_probe_seconds(args) -> tuple[float, float]:
    """Median step time with 2 accumulation steps (the probe on), and the median time spent in the probe per step."""
    steps, inside = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            spent = [0.0]

            def time_probe(trainer):
                probe = trainer.noise
                assert probe.available, probe.why_not
                for name in ("start_step", "after_backward", "finish_step"):
                    setattr(probe, name, _timed(getattr(probe, name), spent))

            steps.append(loop_step_seconds(args.steps, args.warmup, [], args.diagnostics_every, f"{tmp}/n{repeat}",
                                           grad_accum=2, prepare_trainer=time_probe))
            inside.append(spent[0] / (args.steps + args.warmup))
    return statistics.median(steps), statistics.median(inside)


def _timed(method, spent: list):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start
    return timed


if __name__ == "__main__":
    main()
