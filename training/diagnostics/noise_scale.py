"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", appendix A),
measured from two batch sizes a step already has, with no extra forward pass.

With squared gradient norms measured at a small batch B_small and a big batch B_big (in tokens):

    |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)      (unbiased)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)           (unbiased, per token)
    B_simple  = tr(Sigma) / |G|^2                                                (in tokens)

Single-step estimates of |G|^2 are often negative, so each is smoothed on its own (an exponential moving average,
bias-corrected) and B_simple is the ratio of the smoothed values, not an average of ratios.

Where the two batches come from:

- several processes (DDP): the main process's own gradient before the all-reduce (B_small = its tokens in the step),
  read in a DDP communication hook, against the all-reduced one (B_big = the step's tokens);
- one process with gradient accumulation: the first micro-batch's gradient (B_small = one micro-batch) against the
  accumulated one. ``accelerator.backward`` divides each micro-batch's loss by the accumulation count: the first
  gradient is scaled back before its norm is taken;
- one process and no accumulation: on a measured step the micro-batch is run as two halves, accumulated (the same
  gradient, up to rounding, and no extra FLOPs), and the first half's gradient is the small batch. A micro-batch of
  one sequence cannot be halved (a sequence's tokens depend on each other): the run says so once;
- FSDP (the full local gradient never exists: gradients are reduce-scattered): no second batch size; said once.

All measure the same thing: 2 processes x 1 micro-batch and 1 process x 2 micro-batches of the same data give the
same estimate (tested). The big batch's norm is the total gradient norm before clipping, which the loop computes
anyway (after unscaling, under fp16). Both norms are taken in the same units under every precision: a gradient read
during the backward (the first micro-batch's, the first half's, DDP's local bucket) carries the GradScaler's loss
scale S under fp16, so its squared norm is divided by S^2 (``loss_scale``).
"""

import torch

DEFAULT_SMOOTHING = 0.2  # EMA weight of each new measurement (about 5 measurements of memory)


def unbiased_estimates(small_sq: float, big_sq: float, b_small: float, b_big: float) -> tuple[float, float]:
    """(|G|^2, tr(Sigma)) from squared gradient norms at two batch sizes (McCandlish et al., appendix A)."""
    g_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g_sq, trace


class NoiseScaleEstimate:
    """|G|^2 and tr(Sigma) smoothed separately; B_simple is their ratio."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING):
        self.smoothing = smoothing
        self.g_sq = self.trace = self.weight = 0.0

    def update(self, small_sq: float, big_sq: float, b_small: float, b_big: float) -> dict:
        g_sq, trace = unbiased_estimates(small_sq, big_sq, b_small, b_big)
        a = self.smoothing
        self.g_sq = (1 - a) * self.g_sq + a * g_sq
        self.trace = (1 - a) * self.trace + a * trace
        self.weight = (1 - a) * self.weight + a
        return self.values()

    def values(self) -> dict:
        if self.weight == 0:
            return {}
        g_sq, trace = self.g_sq / self.weight, self.trace / self.weight
        return {"g_sq": g_sq, "trace": trace, "b_simple": trace / g_sq if g_sq > 0 else float("nan")}

    def state_dict(self) -> dict:
        return {"g_sq": self.g_sq, "trace": self.trace, "weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.g_sq, self.trace, self.weight = state["g_sq"], state["trace"], state["weight"]


def squared_norm(parameters) -> float:
    return float(sum(p.grad.detach().float().pow(2).sum() for p in parameters if p.grad is not None))


class NoiseScaleProbe:
    """The loop's side of the measurement: which small batch this layout offers, and capturing its norm.

    ``pieces`` says how to run a micro-batch (whole, or in two halves on a measured step of a one-process run
    without accumulation) and ``after_backward`` reads the small batch's gradient after the first piece of the first
    micro-batch. ``loss_scale`` returns the loss scale of the current step's backward (1 without fp16's scaler)."""

    def __init__(self, model: torch.nn.Module, num_processes: int, grad_accum: int, micro_tokens: int,
                 sharded: bool, micro_batch_size: int = 2, loss_scale=lambda: 1.0):
        self.estimate = NoiseScaleEstimate()
        self.armed = False
        self.small_sq: float | None = None
        self.grad_accum = grad_accum
        self.loss_scale = loss_scale
        self.micro_batch_size = micro_batch_size
        self.step_tokens = micro_tokens * grad_accum * num_processes
        self.why_not = None
        if sharded:
            self.mode, self.small_tokens = None, 0
            self.why_not = ("gradients are sharded (FSDP): a process's full local gradient never exists, so there "
                            "is no second batch size to compare")
        elif num_processes > 1:
            self.mode, self.small_tokens = "ddp", micro_tokens * grad_accum
            self._register_hook(model)
        elif grad_accum > 1:
            self.mode, self.small_tokens = "micro", micro_tokens
        elif micro_batch_size >= 2:
            self.mode = "split"
            self.small_tokens = micro_tokens // micro_batch_size * (micro_batch_size // 2)
        else:
            self.mode, self.small_tokens = None, 0
            self.why_not = ("one process without gradient accumulation and one sequence per micro-batch offers a "
                            "single batch size (a sequence cannot be halved); the noise scale needs two: use "
                            "--micro_batch_size 2 or more, accumulation, or several processes")

    @property
    def available(self) -> bool:
        return self.mode is not None

    def _register_hook(self, model: torch.nn.Module) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        probe = self

        def local_then_allreduce(state, bucket):
            if probe.armed:  # this process's gradient, before it is averaged with the others'
                probe.small_sq = (probe.small_sq or 0.0) + float(bucket.buffer().detach().float().pow(2).sum())
            return default_hooks.allreduce_hook(state, bucket)

        if hasattr(model, "register_comm_hook"):
            model.register_comm_hook(None, local_then_allreduce)
        else:
            self.mode, self.why_not = None, "the model is not wrapped in DistributedDataParallel"

    def start_step(self, measure: bool) -> None:
        self.armed = measure and self.available
        self.small_sq = None

    def pieces(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """``(x, y, weight)`` to run one after another for this micro-batch: the whole of it, or, when this step is
        measured in "split" mode, its two halves, each weighted by its share of the sequences (the weighted losses
        add up to the micro-batch's mean loss, and their gradients to its gradient)."""
        if not (self.armed and self.mode == "split"):
            return [(x, y, 1.0)]
        half, rows = x.shape[0] // 2, x.shape[0]
        return [(x[:half], y[:half], half / rows), (x[half:], y[half:], (rows - half) / rows)]

    def after_backward(self, micro: int, piece: int, weight: float, parameters) -> None:
        """After the first piece of the first micro-batch (modes "micro" and "split"): its own gradient, scaled
        back from the 1 / (grad_accum / weight) the backward applied to it (the loss scale is removed at the
        end of the step)."""
        if self.armed and self.mode in ("micro", "split") and micro == 0 and piece == 0:
            self.small_sq = squared_norm(parameters) * (self.grad_accum / weight) ** 2

    def finish_step(self, big_sq: float) -> dict | None:
        """Update the estimate with this step's two norms; the smoothed values (on a measured step), else None."""
        armed, self.armed = self.armed, False
        if not armed or self.small_sq is None or not (big_sq == big_sq and big_sq < float("inf")):
            return None
        scale = float(self.loss_scale())
        small_sq = self.small_sq / scale ** 2  # the small gradient was read before unscaling (fp16)
        if not (small_sq == small_sq and small_sq < float("inf")):
            return None  # an overflowing fp16 step: the scaler skips it too
        return self.estimate.update(small_sq, big_sq, self.small_tokens, self.step_tokens)
