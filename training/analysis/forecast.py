"""Loss forecasts from a run's own curve and learning-rate history: the scaling law with learning-rate annealing of
Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", arXiv 2408.11029):

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

S1 is the forward area, the learning rate summed up to step s; S2 the annealing area, the sum over steps of a
momentum of the learning-rate decreases, m_i = lambda * m_(i-1) + (eta_(i-1) - eta_i), with lambda = 0.999 as in the
paper (warmup's increases are not annealing: they count as 0). L0, A, alpha, C are fitted to the run's validation
losses (its training losses, binned, when fewer than MIN_POINTS validations were logged) with a Huber loss on log
residuals, from several starting points (L-BFGS-B). One fitted curve then predicts the loss under any schedule with
the same peak learning rate and batch: a longer one, a WSD cool-down at another step, a cosine of another length.

The interval comes from refitting on bootstrap resamples of the points. What the fit cannot know: a schedule with
another batch size or peak learning rate far from the fitted one, data read more than once (the law assumes fresh
data: the loss then falls slower than forecast), and anything far beyond the fitted range; each is said in
``warnings``.
"""

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..layout import Tags
from ..optim.schedules import Anchor, Schedule
from .runs import Run

DECAY = 0.999  # lambda of the annealing momentum (Tissue et al.)
MIN_POINTS = 8  # points after warmup below which the fit is not to be trusted
FAR_BEYOND = 4.0  # a forecast this many times past the last fitted step is flagged
BOOTSTRAP = 20
HUBER_DELTA = 1e-3


def areas(lrs: np.ndarray, decay: float = DECAY) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each step, for a learning rate per step (step 1 first)."""
    from scipy.signal import lfilter

    lrs = np.asarray(lrs, dtype=float)
    drops = np.zeros_like(lrs)
    drops[1:] = np.maximum(lrs[:-1] - lrs[1:], 0.0)
    momentum = lfilter([1.0], [1.0, -decay], drops)  # m_i = decay * m_(i-1) + drop_i
    return np.cumsum(lrs), np.cumsum(momentum)


def law(params, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    l0, a, alpha, c = params
    return l0 + a * np.power(np.maximum(s1, 1e-12), -alpha) - c * s2


def _fit_params(s1: np.ndarray, s2: np.ndarray, loss: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """L0, A, alpha, C minimising a Huber loss of the log residuals (robust to the odd noisy point), from several
    starting points (or from ``start``, a previous fit: the bootstrap refits); scipy's trust-region least squares
    with bounds. A is fitted as log A and C in thousandths, so the four unknowns have comparable scales."""
    from scipy.optimize import least_squares

    log_loss = np.log(loss)

    def residuals(x):
        predicted = law((x[0], math.exp(x[1]), x[2], x[3] * 1e-3), s1, s2)
        return np.log(np.maximum(predicted, 1e-9)) - log_loss

    floor = float(loss.min())
    # Learning rates are in units of the peak, so S2 grows by about the total decay per step of annealing: C is of
    # the order of (the loss annealing buys) / (steps x decay), a thousandth or less.
    lower, upper = [0.0, -20.0, 0.01, 0.0], [floor * (1 - 1e-9), 20.0, 3.0, 1e3]
    if start is not None:
        starts = [(min(start[0], 0.99 * floor), math.log(max(start[1], 1e-9)), start[2], start[3] * 1e3)]
    else:
        starts = []
        for l0, alpha, c in itertools.product((0.3 * floor, 0.7 * floor), (0.3, 0.8), (0.0, 1.0)):
            a = max(float(loss[0]) - l0, 1e-3) * float(s1[0]) ** alpha
            starts.append((l0, math.log(a), alpha, c))
    best, best_cost = None, math.inf
    for guess in starts:
        guess = np.clip(guess, lower, np.array(upper) - 1e-9)
        result = least_squares(residuals, guess, bounds=(lower, upper), loss="huber", f_scale=HUBER_DELTA,
                               x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=300)
        if result.cost < best_cost:
            best, best_cost = result.x, result.cost
    return np.array([best[0], math.exp(best[1]), best[2], best[3] * 1e-3])


@dataclass
class Fit:
    """A fitted law and what it was fitted on."""

    params: list[float]
    scale: float  # learning rates are divided by this (the run's peak) before the areas are taken
    source: str  # "validation loss" or "training loss"
    steps: list[int]
    losses: list[float]
    residual_rms: float
    warnings: list[str] = field(default_factory=list)
    bootstrap: list[list[float]] = field(default_factory=list)

    def curve(self, lrs: np.ndarray, params=None) -> np.ndarray:
        s1, s2 = areas(np.asarray(lrs) / self.scale)
        return law(self.params if params is None else params, s1, s2)

    def final(self, lrs: np.ndarray) -> tuple[float, float, float]:
        """The loss after the last step of ``lrs``, with a 5-95% interval from the bootstrap fits."""
        value = float(self.curve(lrs)[-1])
        if not self.bootstrap:
            return value, value, value
        draws = [float(self.curve(lrs, p)[-1]) for p in self.bootstrap]
        return value, float(np.percentile(draws, 5)), float(np.percentile(draws, 95))

    @property
    def trusted(self) -> bool:
        return not self.warnings


def lr_history(run: Run) -> np.ndarray:
    """The learning rate of every step 1..last, as logged (held between logged steps with --log_every > 1)."""
    steps, lrs = run.series(Tags.TRAIN_LR)
    if not len(steps):
        return np.array([])
    every = np.arange(1, int(steps.max()) + 1)
    index = np.searchsorted(steps, every, side="right") - 1
    return lrs[np.clip(index, 0, len(lrs) - 1)]


def run_schedule(run: Run, max_steps: int | None = None, **changes) -> Schedule:
    """The run's schedule as configured (with its latest re-plan, if a resume made one), optionally with another
    length or shape."""
    train = dict(run.settings)
    anchor = None
    for record in run.changes:
        if record.get("anchor"):
            anchor = Anchor(**record["anchor"])
    if max_steps is not None:
        train["max_steps"] = max_steps
        if anchor is not None and anchor.step >= max_steps:
            anchor = None
    train.update(changes)
    if changes:
        anchor = None  # another schedule from the start
    return Schedule.from_args(train, anchor=anchor)


def planned_lrs(run: Run, schedule: Schedule, keep_history: bool) -> np.ndarray:
    """Learning rates of steps 1..schedule.max_steps: the logged ones followed by ``schedule`` (the run's own
    future), or ``schedule`` from the start (another schedule)."""
    peak = float(run.settings.get("max_lr") or lr_history(run).max())
    planned = peak * schedule.factors()
    if keep_history:
        history = lr_history(run)[: schedule.max_steps]
        planned[: len(history)] = history
    return planned


def fit_run(run: Run, bootstrap: int = BOOTSTRAP, seed: int = 0) -> Fit | None:
    """Fit the law to a run; None when there is nothing to fit (no learning rate or loss logged)."""
    history = lr_history(run)
    warmup = int(run.settings.get("warmup_steps", 0) or 0)
    if not len(history):
        return None
    val_steps, val = run.series(Tags.VAL_LOSS)
    keep = (val_steps > warmup) & np.isfinite(val) & (val_steps <= len(history))
    if keep.sum() >= MIN_POINTS:
        steps, losses, source = val_steps[keep].astype(int), val[keep], "validation loss"
    else:
        steps, losses, source = _binned_train_loss(run, warmup, len(history))
    warnings = []
    if len(steps) < MIN_POINTS:
        warnings.append(f"only {len(steps)} loss point(s) after warmup (at least {MIN_POINTS} are needed)")
    if len(history) <= warmup:
        warnings.append(f"the run is still in its warmup ({len(history)} of {warmup} steps): the law describes "
                        "the loss after it")
    if run.has(Tags.TRAIN_EPOCH) and max(run.scalars[Tags.TRAIN_EPOCH].values()) >= 1:
        warnings.append("the run read its data more than once: the law assumes fresh data, so past the first "
                        "epoch the loss falls slower than forecast")
    if len(steps) < 4:
        return Fit([], 1.0, source, steps.tolist(), losses.tolist(), math.nan, warnings + ["too few points to fit"])
    scale = float(history.max())
    s1, s2 = areas(history / scale)
    index = steps - 1
    params = _fit_params(s1[index], s2[index], losses)
    residual = np.log(law(params, s1[index], s2[index])) - np.log(losses)
    fit = Fit(list(map(float, params)), scale, source, steps.tolist(), losses.tolist(),
              float(np.sqrt(np.mean(residual ** 2))), warnings)
    rng = np.random.default_rng(seed)
    for _ in range(bootstrap):
        pick = np.sort(rng.integers(0, len(steps), len(steps)))
        if len(set(pick.tolist())) < 4:
            continue
        fit.bootstrap.append(list(map(float, _fit_params(s1[index[pick]], s2[index[pick]], losses[pick],
                                                         start=params))))
    return fit


def _binned_train_loss(run: Run, warmup: int, last: int) -> tuple[np.ndarray, np.ndarray, str]:
    steps, loss = run.series(Tags.TRAIN_LOSS)
    keep = (steps > warmup) & np.isfinite(loss) & (steps <= last)
    steps, loss = steps[keep], loss[keep]
    if not len(steps):
        return np.array([], dtype=int), np.array([]), "training loss"
    bins = np.array_split(np.arange(len(steps)), min(50, len(steps)))
    centre = np.array([int(steps[b[-1]]) for b in bins if len(b)])
    mean = np.array([float(loss[b].mean()) for b in bins if len(b)])
    return centre, mean, "training loss (binned means; fewer validations than needed)"


@dataclass
class Forecast:
    """What a run's fit predicts (each loss with its 5-95% interval)."""

    fit: dict
    trusted: bool
    warnings: list[str]
    last_step: int
    tokens_per_step: float
    current_schedule: dict | None = None  # the run's own schedule to its max_steps
    horizons: list[dict] = field(default_factory=list)  # other lengths / schedules
    target: dict | None = None  # tokens to reach a target loss

    def to_dict(self) -> dict:
        return asdict(self)


def _prediction(fit: Fit, lrs: np.ndarray, what: str, steps: int, tokens_per_step: float) -> dict:
    value, low, high = fit.final(lrs)
    far = steps > FAR_BEYOND * max(fit.steps)
    return {"what": what, "steps": steps, "tokens": steps * tokens_per_step, "loss": value, "low": low,
            "high": high, "far_beyond_fit": far}


def forecast(run: Run, max_steps: int | None = None, schedules: list[dict] = (), target: float | None = None,
             bootstrap: int = BOOTSTRAP) -> Forecast | None:
    """The run's forecasts: its own schedule to its end (or stretched to ``max_steps``), a full epoch of its data,
    the given other ``schedules`` ({"lr_schedule": ..., "max_steps": ..., "decay_steps": ...}), and the tokens its
    schedule needs to reach ``target`` (default: the run's reference loss)."""
    fit = fit_run(run, bootstrap)
    if fit is None:
        return None
    tokens_per_step = float(run.tokens_per_step or 0)
    last = len(lr_history(run))
    result = Forecast(fit=asdict(fit), trusted=fit.trusted, warnings=list(fit.warnings), last_step=last,
                      tokens_per_step=tokens_per_step)
    if not fit.params:
        return result
    own = run_schedule(run, max_steps)
    result.current_schedule = _prediction(fit, planned_lrs(run, own, keep_history=own.max_steps >= last),
                                          f"{'its schedule stretched' if max_steps else 'its own schedule'} to "
                                          f"step {own.max_steps}", own.max_steps, tokens_per_step)
    if run.dataset_tokens and tokens_per_step:
        epoch = int(run.dataset_tokens // tokens_per_step)
        if epoch > last:
            schedule = run_schedule(run, epoch)
            result.horizons.append(_prediction(fit, planned_lrs(run, schedule, keep_history=False),
                                               f"one full epoch ({epoch} steps), same schedule shape", epoch,
                                               tokens_per_step))
    for spec in schedules:
        spec = dict(spec)
        steps = int(spec.pop("max_steps"))
        schedule = run_schedule(run, steps, **spec)
        result.horizons.append(_prediction(fit, planned_lrs(run, schedule, keep_history=False),
                                           schedule.describe(), steps, tokens_per_step))
    target = target if target is not None else run.reference_loss
    if target is not None:
        result.target = tokens_to_target(run, fit, target, tokens_per_step)
    if any(h.get("far_beyond_fit") for h in [result.current_schedule, *result.horizons] if h):
        result.warnings.append(f"some forecasts reach more than {FAR_BEYOND:g}x past the last fitted step "
                               f"({max(fit.steps)}): extrapolation, to be read as a rough guide")
    return result


def tokens_to_target(run: Run, fit: Fit, target: float, tokens_per_step: float, limit: int = 1_000_000) -> dict:
    """The smallest length of the run's schedule (stretched) whose forecast final loss reaches ``target``, with the
    same for the bootstrap fits (an interval); None past ``limit`` steps."""
    def steps_needed(params) -> int | None:
        def final(steps: int) -> float:
            lrs = planned_lrs(run, run_schedule(run, steps), keep_history=False)
            return float(fit.curve(lrs, params)[-1])
        low, high = max(2, int(run.settings.get("warmup_steps", 0) or 0) + 1), limit
        if final(high) > target:
            return None
        while high - low > max(1, low // 200):
            middle = (low + high) // 2
            low, high = (low, middle) if final(middle) <= target else (middle, high)
        return high

    main = steps_needed(fit.params)
    draws = [s for s in (steps_needed(p) for p in fit.bootstrap[:10]) if s is not None]
    return {"target": target, "steps": main, "tokens": main * tokens_per_step if main else None,
            "low_tokens": min(draws) * tokens_per_step if draws else None,
            "high_tokens": max(draws) * tokens_per_step if draws else None,
            "reached_in_bootstrap": f"{len(draws)} of {min(10, len(fit.bootstrap))}"}
