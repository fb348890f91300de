"""Synthetic runs for the report's tests: each plants one behaviour (a healthy 124M-like run, a tiny CPU run at lr
3e-3, a divergence after a short stable stretch, memorisation, lr 1e-7, a noisy gradient norm, Muon, ...) in the
scalars the loop logs (training/layout.py Tags), with the update ratios Adam would produce: lr_t x e / rms(w) for a
consistency e that falls from 1 (early, steps agree) towards gradient noise (~0.3), and 0.2 x lr / rms(w) x ~0.9
for Muon's matrices."""

import math
from dataclasses import dataclass, field

import numpy as np

from training.analysis.runs import Run

MATRICES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def schedule(steps: int, peak: float, warmup: int, floor: float = 0.1, kind: str = "cosine") -> dict[int, float]:
    out = {}
    for s in range(1, steps + 1):
        if s <= warmup:
            out[s] = peak * s / max(warmup, 1)
        elif kind == "constant":
            out[s] = peak
        else:
            progress = (s - warmup) / max(steps - warmup, 1)
            out[s] = peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    return out


@dataclass
class Plant:
    """The knobs of a synthetic run; ``build`` turns them into a ``Run``."""

    steps: int = 300
    peak_lr: float = 6e-4
    warmup: int = 30
    lr_kind: str = "cosine"
    loss: callable = None  # step -> clean train loss
    loss_noise: float = 0.03
    val: callable = None  # step -> validation loss (None: the clean train loss + 0.05)
    eval_every: int = 25
    grad_norm: callable = None  # (step, rng) -> gradient norm
    n_layer: int = 4
    n_embd: int = 128
    init_std: float = 0.02
    weight_rms: float = 0.02  # hidden matrices' RMS (c_proj: / sqrt(2 n_layer))
    consistency: callable = None  # step -> Adam's e
    optimizer: str = "adamw"
    muon_lr: float | None = None
    weight_decay: float = 0.1
    diagnostics_every: int = 10
    tokens_per_step: float = 512.0
    dataset_tokens: int | None = 10_000_000
    epoch_every: int | None = None  # steps per epoch when the data repeats
    dropout: float = 0.0
    seed: int = 0
    changes: list = field(default_factory=list)
    interventions: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # tag -> {step: value}, added last
    callbacks: bool = True  # log update ratios and weight RMS

    def build(self, tmp_path, name: str = "plant") -> Run:
        rng = np.random.default_rng(self.seed)
        lr = schedule(self.steps, self.peak_lr, self.warmup, kind=self.lr_kind)
        loss_fn = self.loss or (lambda s: 3.3 + 7.5 * math.exp(-s / 60))
        scalars: dict[str, dict[int, float]] = {"train/lr": lr}
        scalars["train/loss"] = {s: loss_fn(s) + self.loss_noise * rng.standard_normal() for s in lr}
        grad = self.grad_norm or (lambda s, r: 0.4 * math.exp(0.1 * r.standard_normal()) + 2 * math.exp(-s / 20))
        scalars["train/grad_norm"] = {s: float(grad(s, rng)) for s in lr}
        scalars["train/tokens_seen"] = {s: s * self.tokens_per_step for s in lr}
        epoch = self.epoch_every
        scalars["train/epoch"] = {s: float((s - 1) // epoch if epoch else 0) for s in lr}
        scalars["run/tokens_per_step"] = {0: self.tokens_per_step}
        if self.eval_every:
            val = self.val or (lambda s: loss_fn(s) + 0.05)
            scalars["val/loss"] = {s: float(val(s)) for s in range(self.eval_every, self.steps + 1, self.eval_every)}
        if self.optimizer == "muon":
            scalars["train/lr_muon"] = schedule(self.steps, self.muon_lr or self.peak_lr, self.warmup,
                                                kind=self.lr_kind)
        if self.callbacks:
            self._ratios(scalars, lr, rng)
        for tag, values in self.extra.items():
            scalars.setdefault(tag, {}).update(values)
        config = {"model": {"n_layer": self.n_layer, "n_embd": self.n_embd, "init_std": self.init_std,
                            "vocab_size": 50304, "dropout": self.dropout},
                  "train": {"max_lr": self.peak_lr, "min_lr": self.peak_lr / 10, "warmup_steps": self.warmup,
                            "max_steps": self.steps, "weight_decay": self.weight_decay, "optimizer": self.optimizer,
                            "muon_lr": self.muon_lr, "adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8,
                            "grad_clip": 1.0}}
        scalars = {tag: dict(sorted(values.items())) for tag, values in scalars.items()}
        return Run(name=name, run_dir=tmp_path, scalars=scalars, config=config, dataset_tokens=self.dataset_tokens,
                   changes=list(self.changes), interventions=list(self.interventions))

    def _ratios(self, scalars, lr, rng):
        e_fn = self.consistency or (lambda s: 0.3 + 0.7 * math.exp(-s / 30))
        names = [f"h.{b}.{kind}.weight" for b in range(self.n_layer) for kind in MATRICES] + ["wte.weight",
                                                                                             "wpe.weight"]
        for name in names:
            base = self.weight_rms / (math.sqrt(2 * self.n_layer) if name.endswith("c_proj.weight") else 1)
            hidden = name.startswith("h.")
            muon = self.optimizer == "muon" and hidden
            group_lr = scalars["train/lr_muon"] if muon else lr
            for s in range(1, self.steps + 1):
                if s != 1 and s % self.diagnostics_every:
                    continue
                # strong decay pulls the weights in (to 60% by the end): what the weight-decay rule reads
                rms = base * (1 - 0.4 * s / self.steps if self.weight_decay > 1 else 1.0)
                e = (0.9 if muon else e_fn(s)) * math.exp(0.1 * rng.standard_normal())
                scale = (0.2 if muon else 1.0) * group_lr[s] / rms
                if name == "wpe.weight":
                    e *= 0.3  # rows beyond the trained context never move
                decay = group_lr[s] * self.weight_decay
                scalars.setdefault(f"weight_rms/{name}", {})[s] = rms
                scalars.setdefault(f"update_ratio_grad/{name}", {})[s] = e * scale
                scalars.setdefault(f"update_ratio_decay/{name}", {})[s] = decay
                scalars.setdefault(f"update_ratio/{name}", {})[s] = math.hypot(e * scale, decay)
                scalars.setdefault(f"grad_ratio/{name}", {})[s] = 1e-3 * math.exp(0.2 * rng.standard_normal())


# ----------------------------------------------------------------------------------------------- the plants
def healthy_124m() -> Plant:
    """GPT-2 124M-like: lr 6e-4 after 100 warmup steps, cosine, 0.5M tokens per step, 1.5k steps of 10B tokens,
    loss 10.9 -> ~3.4 with small batch noise, gradient norm ~0.3 after an early peak, weights 0.02-0.05."""
    return Plant(steps=1500, peak_lr=6e-4, warmup=100, loss=lambda s: 3.2 + 7.45 * math.exp(-s / 120) + 0.4 *
                 math.exp(-s / 800), loss_noise=0.02, val=lambda s: 3.25 + 7.45 * math.exp(-s / 120) + 0.4 *
                 math.exp(-s / 800), eval_every=50, n_layer=12, n_embd=768, weight_rms=0.035,
                 grad_norm=lambda s, r: 0.3 * math.exp(0.15 * r.standard_normal()) + 1.5 * math.exp(-s / 30),
                 consistency=lambda s: 0.25 + 0.75 * math.exp(-s / 80), diagnostics_every=25,
                 tokens_per_step=524_288.0, dataset_tokens=9_900_000_000)


def tiny_cpu() -> Plant:
    """configs/cpu-tiny.yaml-like: width 128, lr 3e-3 (40 warmup steps), 400 steps of 512 tokens, loss 10.9 -> ~6,
    weights of RMS 0.02: update ratios of several percent per step, which is what such a model does."""
    return Plant(steps=400, peak_lr=3e-3, warmup=40, loss=lambda s: 6.1 + 4.8 * math.exp(-s / 40) - s / 800,
                 loss_noise=0.15, val=lambda s: 6.2 + 4.7 * math.exp(-s / 40) - s / 800, eval_every=50,
                 weight_rms=0.02,
                 grad_norm=lambda s, r: 0.7 * math.exp(0.25 * r.standard_normal()) + 2 * math.exp(-s / 20),
                 consistency=lambda s: 0.2 + 0.8 * math.exp(-s / 15), dataset_tokens=300_000)


def late_divergence_short() -> Plant:
    """Warmup 10, peak lr held from step 10; the loss falls until step 40, then climbs 2 nats by step 60:
    30 steps at the peak with a falling loss before the climb."""
    def loss(s):
        return 10.0 - 0.1 * min(s, 40) + (0.1 * (s - 40) if s > 40 else 0.0)
    return Plant(steps=60, peak_lr=3e-3, warmup=10, lr_kind="constant", loss=loss, loss_noise=0.05,
                 val=lambda s: loss(s) + 0.05, eval_every=10, dataset_tokens=1_000_000)


def diverged_in_warmup() -> Plant:
    """The same climb, starting at step 12 of a 30-step warmup: the peak was never held."""
    def loss(s):
        return 10.0 - 0.1 * min(s, 12) + (0.1 * (s - 12) if s > 12 else 0.0)
    return Plant(steps=60, peak_lr=3e-3, warmup=30, lr_kind="constant", loss=loss, loss_noise=0.05,
                 val=lambda s: loss(s) + 0.05, eval_every=10, dataset_tokens=1_000_000)


def memorising() -> Plant:
    """~3,000 training tokens read 4+ times: train loss keeps falling, validation bottoms at step ~120 and rises."""
    return Plant(steps=400, peak_lr=3e-3, warmup=20, loss=lambda s: 2.0 + 8.9 * math.exp(-s / 50), loss_noise=0.05,
                 val=lambda s: 6.2 + 4.7 * math.exp(-s / 40) + 0.004 * max(0, s - 120), eval_every=20,
                 tokens_per_step=128.0, dataset_tokens=3_000, epoch_every=24)


def memorising_flat() -> Plant:
    """Read many times; validation flat for the later half while train loss falls."""
    return Plant(steps=400, peak_lr=3e-3, warmup=20, loss=lambda s: 1.0 + 9.9 * math.exp(-s / 120),
                 loss_noise=0.05, val=lambda s: 6.0 + 4.9 * math.exp(-s / 25), eval_every=20,
                 tokens_per_step=128.0, dataset_tokens=3_000, epoch_every=24)


def val_rises_data_once() -> Plant:
    """Validation rises while training falls, but every training token is new: not memorisation."""
    p = memorising()
    p.epoch_every, p.dataset_tokens = None, 10_000_000
    return p


def not_learning() -> Plant:
    """lr 1e-7: the loss stays at ln(vocab); every Adam step agrees (e ~ 1) and moves the weights 5e-6."""
    return Plant(steps=200, peak_lr=1e-7, warmup=10, loss=lambda s: 10.95 - 1e-4 * s, loss_noise=0.02,
                 val=lambda s: 10.96 - 1e-4 * s, eval_every=50, consistency=lambda s: 0.97,
                 grad_norm=lambda s, r: 1.2 * math.exp(0.05 * r.standard_normal()))


def not_learning_no_ratios() -> Plant:
    p = not_learning()
    p.callbacks = False
    return p


def noisy_grad_norm() -> Plant:
    """A healthy run whose gradient norm is noisy (lognormal, sigma 0.3 around ~0.97) with a 1.87 in it."""
    def grad(s, r):
        return 1.87 if s == 250 else 0.97 * math.exp(0.3 * r.standard_normal())
    return Plant(steps=400, peak_lr=6e-4, warmup=40, grad_norm=grad, loss=lambda s: 3.5 + 7 * math.exp(-s / 60),
                 loss_noise=0.08, eval_every=50, weight_rms=0.03)


def muon() -> Plant:
    """--optimizer muon, muon_lr 0.02: the hidden matrices move 0.2 x lr_muon / rms(w) x ~0.9 per step."""
    p = tiny_cpu()
    p.optimizer, p.muon_lr, p.peak_lr = "muon", 2e-2, 3e-3
    return p


def ten_steps() -> Plant:
    return Plant(steps=10, peak_lr=3e-3, warmup=2, eval_every=5, loss=lambda s: 10.9 - 0.2 * s)


def unstable_spikes() -> Plant:
    """Repeated loss spikes (with gradient-norm spikes) all through training at a held peak."""
    spikes = (60, 110, 170, 230, 260)

    def loss(s):
        return 4 + 6 * math.exp(-s / 40) + (2.5 if s in spikes else 0.0)

    def grad(s, r):
        return (20.0 if s in spikes else 1.0) * math.exp(0.1 * r.standard_normal())
    return Plant(steps=300, peak_lr=3e-3, warmup=20, lr_kind="constant", loss=loss, loss_noise=0.05,
                 grad_norm=grad, eval_every=50)


def val_falls_train_high() -> Plant:
    """Dropout 0.3: training loss (measured with dropout) barely falls while validation falls."""
    return Plant(steps=300, peak_lr=6e-4, warmup=30, loss=lambda s: 10.6 - 0.3 * (1 - math.exp(-s / 50)),
                 loss_noise=0.03, val=lambda s: 10.5 - 2.0 * (1 - math.exp(-s / 50)), eval_every=25, dropout=0.3)


def plateau() -> Plant:
    return Plant(steps=600, peak_lr=6e-4, warmup=30, loss=lambda s: 4.0 + 6.9 * math.exp(-s / 25), loss_noise=0.03,
                 val=lambda s: 4.1 + 6.9 * math.exp(-s / 25), eval_every=25)


def clipped_and_decayed() -> Plant:
    """Learning is fine, but the clip threshold is below every norm and weight decay dominates with shrinking
    weights: advice on two other settings at once."""
    p = healthy_124m()
    p.grad_norm = lambda s, r: 2.0 * math.exp(0.1 * r.standard_normal())
    p.weight_decay = 10.0
    return p


def rolled_back() -> Plant:
    """The spike guard skipped steps 101-103, rolled back from 103 to 100 (data resumed at 110); a resume at step
    102 (in the abandoned stretch, before the rollback) lowered max_lr; a later skip at 150 survived."""
    p = tiny_cpu()
    p.interventions = [
        {"step": 101, "action": "skip", "loss": 9.0, "loss_z": 8.0, "grad_norm": 5.0, "grad_norm_z": 9.0,
         "signal": "loss"},
        {"step": 102, "action": "skip", "loss": 9.0, "loss_z": 8.0, "grad_norm": 5.0, "grad_norm_z": 9.0,
         "signal": "loss"},
        {"step": 103, "action": "skip", "loss": 9.0, "loss_z": 8.0, "grad_norm": 5.0, "grad_norm_z": 9.0,
         "signal": "loss"},
        {"step": 103, "action": "rollback", "to_step": 100, "data_resumes_at_step": 110, "first_spike": 101,
         "checkpoint": "x/checkpoints/step_0000100", "reason": "the loss stayed above its band for 3 steps"},
        {"step": 150, "action": "skip", "loss": 7.0, "loss_z": 7.0, "grad_norm": 3.0, "grad_norm_z": 7.0,
         "signal": "loss"}]
    p.changes = [{"step": 102, "changes": {"train.max_lr": [3e-3, 1e-3]}, "lr_before": 3e-3, "lr_after": 1e-3,
                  "schedule": None}]
    return p


PLANTS = {"healthy_124m": healthy_124m, "tiny_cpu": tiny_cpu, "late_divergence_short": late_divergence_short,
          "diverged_in_warmup": diverged_in_warmup, "memorising": memorising, "memorising_flat": memorising_flat,
          "val_rises_data_once": val_rises_data_once, "not_learning": not_learning,
          "not_learning_no_ratios": not_learning_no_ratios, "noisy_grad_norm": noisy_grad_norm, "muon": muon,
          "ten_steps": ten_steps, "unstable_spikes": unstable_spikes, "val_falls_train_high": val_falls_train_high,
          "plateau": plateau, "clipped_and_decayed": clipped_and_decayed, "rolled_back": rolled_back}
