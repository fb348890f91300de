"""Loss forecasts from a run's own curve and learning-rate history: the scaling law with learning-rate annealing of
Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", arXiv 2408.11029):

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

S1 is the forward area, the learning rate summed up to step s; S2 the annealing area, the sum over steps of a
momentum of the learning-rate decreases, m_i = lambda * m_(i-1) + (eta_(i-1) - eta_i) (warmup's increases are not
annealing: they count as 0). Learning rates are in units of the run's peak. The paper's lambda is 0.999 (a memory of
~1000 steps, fitted on runs of tens of thousands of steps); when the fitted histories decay, the fit also tries
shorter memories (DECAYS) and keeps one only when the data prefer it (DECAY_EVIDENCE): on the project's small CPU runs
a 40-step cool-down settles within tens of steps, and with 0.999 the law credits a long decay with ten times a short
one's gain (bench/RESULTS.md). Each bootstrap refit chooses its own lambda, so the interval carries that doubt.

Constrained by the mechanism, not by clipping its outputs. S2 after step s is sum_k d_k (1 - lambda^(s-k+1)) /
(1 - lambda) over the decreases d_k, so it saturates at (total decrease) / (1 - lambda): an infinitely long run
annealed by the largest decrease D of its schedules (1 - min_lr/max_lr) reaches L_inf = L0 - C * D / (1 - lambda), and
every loss the law predicts for such a schedule lies above it. The fit's unknowns are L_inf (in [0, the lowest fitted
loss)), log A, alpha (in [ALPHA_MIN, ALPHA_MAX]) and the gain of that infinite anneal g = L0 - L_inf >= 0, so no
fitted law predicts a loss <= 0 for a schedule of the run's peak and floor. A prediction that is still impossible (a
schedule annealing more than D, a fresh run so short that the law gives more than the run's initial loss) is refused
with the reason, never printed as a number.

Identifiability: C multiplies S2, which is 0 wherever the learning rate never fell (warmup-stable runs, constant lr).
Such a history says nothing about C. The run's cool-down branches (run folders with a branch.json naming it as
parent_run: scripts/cooldown.py makes them beside it) are then fitted jointly with it, each with its own S1/S2 (its
parent's history up to the branch step, then its own learning rates) and its own points after the branch step.
Without them, C is fixed at 0, every forecast whose schedule decays more than the history did is untrusted, its
interval spans every annealing gain the bound above allows, and the forecast names the scripts/cooldown.py command
that would give the fit its C.

The fitted points, after warmup and within the first epoch of the data when there are enough of them there (the law
assumes fresh data): the validation losses; with fewer than MIN_POINTS of them but at least MIN_CALIBRATION, the
validation losses together with the binned training losses, which give the curve its shape through a fitted
train/val ratio (the training loss of other text than the validation split runs several percent lower: a fit on it
alone forecast the quick-start preset's validation loss 15-19% too low); with fewer, the binned training losses (and
the forecasts are then of the training loss). A Huber loss on log residuals scaled by each point's noise, from
several starting points; then BOOTSTRAP refits on resampled points.

What an interval means: ``low``-``high`` is a 5-95% prediction interval for the loss one would measure (one
evaluation of the same validation set, or one bin of training loss when fitted on it) at the end of that schedule:
the bootstrap spread of the fitted curve (parameters and lambda) combined with the measurement noise of one point
(from the second differences of the fitted points, or from the residuals when larger); a fresh run's rows add a
run-to-run spread of FRESH_SPREAD (another run's own luck is not in this run's curve; two seeds of the quick-start
model end 1-2% apart). ``curve_low``-``curve_high`` is the bootstrap spread of the curve alone. A fit whose own points
fall outside their band much more often than 10% of the time is untrusted: the law does not follow the curve.

What the fit cannot know, each said as a warning on the row it concerns: a schedule annealing where the fitted
history never did (above), far more annealing than any fitted point had, data read more than once (past one epoch the
loss falls slower than forecast), anything far beyond the fitted range, another batch size or peak learning rate (not
modelled: the law's constants depend on both). A diverged run (non-finite losses, or a loss that climbed back well
above its minimum) is not forecast. Any horizon is computed without per-step arrays of its length (``Plan``).
"""

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..layout import RunLayout, Tags, checkpoint_step
from ..optim.schedules import Anchor, Schedule, decay_array
from .runs import Run, abandoned_line

DECAY = 0.999  # lambda of the annealing momentum (Tissue et al.): the default, and the largest tried
# The lambdas a fit tries when C is identified (the best fitting is kept): memories of 50 to 1000 steps (shorter
# than 50 is the optimizer's own memory, AdamW's beta2 = 0.95 being 20 steps).
DECAYS = (0.98, 0.99, 0.995, DECAY)
DECAY_EVIDENCE = 0.5  # ... and only when it lowers the fit's cost (0.5 sum of Huber(residual / noise)) by this
FRESH_SPREAD = 0.01  # relative run-to-run spread of a fresh run's loss (1 sigma), added to fresh rows' intervals
MIN_POINTS = 8  # points after warmup below which the fit is not to be trusted
FAR_BEYOND = 4.0  # a forecast this many times past the last fitted step is untrusted (extrapolation)
BOOTSTRAP = 40
BINS = 50  # training losses are averaged into at most this many bins
MIN_CALIBRATION = 3  # validation points that, with the binned training loss for the shape, make a validation fit
LATE_WEIGHT = 0.0  # residual weights grow as (S1 / the largest S1) ** LATE_WEIGHT
FIRST_STEP = 1.0  # points after FIRST_STEP x the warmup steps are fitted
HUBER_SCALE = 1.5  # Huber threshold in units of the point-to-point noise
NOISE_FLOOR = 1e-4  # the smallest noise of a point (log space) the fit assumes (noiseless synthetic curves)
ALPHA_MIN, ALPHA_MAX = 0.05, 2.0
MIN_DECAY = 0.1  # learning-rate decrease (in units of the peak) the fitted history needs for C to be identified
MIN_DECAYED_POINTS = 2  # ... with at least this many fitted points after it
COVERAGE = 0.9  # the interval's nominal coverage (5-95%)
MAX_OUTSIDE_CHANCE = 0.01  # a fit with more of its own points outside their 5-95% band than 10% would leave with this
# chance (binomial) does not follow the curve
COOLDOWN_FRACTION = 0.15  # the suggested cool-down branch, as a fraction of the checkpoint's step
MAX_STEPS = 10 ** 15  # longer horizons are refused (S1 and S2 are exact up to 2^53)
PLANNED_LIMIT = 50_000_000  # planned_lrs builds per-step arrays: refused above this length (use Plan)
_EXACT = 4096  # pieces of a schedule summed step by step at each end; their middle by quadrature
_TAIL = 40_000  # steps before the end in which lambda^(steps to the end) still matters (0.999^40000 = 4e-18)
_Z = 1.6448536269514722  # the 95th percentile of a standard normal


# ---------------------------------------------------------------------------------------------- the areas
def areas(lrs: np.ndarray, decay: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each step, for a learning rate per step (step 1 first)."""
    from scipy.signal import lfilter

    decay = DECAY if decay is None else decay

    lrs = np.asarray(lrs, dtype=float)
    drops = np.zeros_like(lrs)
    drops[1:] = np.maximum(lrs[:-1] - lrs[1:], 0.0)
    momentum = lfilter([1.0], [1.0, -decay], drops)  # m_i = decay * m_(i-1) + drop_i
    return np.cumsum(lrs), np.cumsum(momentum)


def law(params, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    l0, a, alpha, c = params
    return l0 + a * np.power(np.maximum(s1, 1e-12), -alpha) - c * s2


def schedule_factors(schedule: Schedule, steps) -> np.ndarray:
    """``schedule.factor`` at any (0-based, possibly fractional) steps, vectorised: ``Schedule.factors`` for a range
    that need not start at 0 (a forecast never builds an array of its whole length)."""
    steps = np.asarray(steps, dtype=float)
    out = np.empty_like(steps)
    if schedule.kind == "wsd":
        out[:] = 1.0
        decaying = steps >= schedule.decay_start
        out[decaying] = decay_array(1.0, schedule.min_ratio, (steps[decaying] - schedule.decay_start) /
                                    max(1, schedule.decay_steps), schedule.decay_shape)
        out[steps >= schedule.max_steps] = schedule.end_factor
    else:
        progress = (steps - schedule.warmup_steps) / max(1, schedule.max_steps - schedule.warmup_steps)
        out[:] = decay_array(1.0, schedule.min_ratio, progress, "cosine")
        out[steps > schedule.max_steps] = schedule.min_ratio
    warming = steps < schedule.warmup_steps
    out[warming] = (steps[warming] + 1) / schedule.warmup_steps
    if schedule.anchor is not None:
        anchor = schedule.anchor
        after = steps >= anchor.step
        span = max(1, schedule.max_steps - anchor.step)
        out[after] = decay_array(anchor.factor, schedule.min_ratio, (steps[after] - anchor.step) / span, anchor.shape)
    return out


def _breakpoints(schedule: Schedule) -> list[int]:
    """0-based steps where a schedule's formula changes (it is smooth and monotone between them)."""
    points = [0, schedule.warmup_steps, schedule.max_steps, schedule.max_steps + 1]
    if schedule.kind == "wsd":
        points.append(schedule.decay_start)
    if schedule.anchor is not None:
        points.append(schedule.anchor.step)
    return sorted({int(p) for p in points})


def _graded_integral(f, a: float, b: float) -> float:
    """The integral of a smooth ``f`` over [a, b]: Gauss-Legendre on subintervals graded geometrically towards both
    ends (an endpoint may have an integrable singular derivative, as 1-sqrt has where it starts)."""
    length = b - a
    if length <= 0:
        return 0.0
    cuts = [0.0]
    width = 1.0
    while width < length / 2:
        cuts.append(width)
        width *= 2
    cuts = np.unique(np.concatenate([cuts, [length / 2], length - np.array(cuts)]))
    nodes, weights = np.polynomial.legendre.leggauss(12)
    low, high = cuts[:-1], cuts[1:]
    x = a + ((low + high)[:, None] + (high - low)[:, None] * nodes[None, :]) / 2
    return float(np.sum(f(x.ravel()).reshape(x.shape) * weights[None, :] * ((high - low)[:, None] / 2)))


@dataclass(frozen=True)
class Plan:
    """A learning-rate path in units of the peak: ``prefix`` for steps 1..len(prefix) (a logged history), then
    ``schedule`` (its factor of the 0-based step) up to step ``end``. Its areas are computed without an array of its
    length: step by step near the ends of each smooth piece and near the end, by quadrature in between."""

    prefix: np.ndarray
    schedule: Schedule | None
    end: int

    def factors(self, start: int, stop: int) -> np.ndarray:
        """Factors of 0-based steps start..stop-1 (a bounded range)."""
        start, stop = max(0, start), min(stop, self.end)
        out = np.empty(max(0, stop - start))
        known = len(self.prefix)
        split = min(max(start, known), stop)
        out[: split - start] = self.prefix[start:split]
        if stop > split:
            if self.schedule is None:
                raise ValueError("a plan without a schedule ends with its prefix")
            out[split - start:] = schedule_factors(self.schedule, np.arange(split, stop, dtype=float))
        return out

    def _pieces(self) -> list[tuple[int, int]]:
        known = min(len(self.prefix), self.end)
        if self.end <= known:
            return []
        cuts = [known, self.end] + [p for p in _breakpoints(self.schedule) if known < p < self.end]
        cuts = sorted(set(cuts))
        return list(itertools.pairwise(cuts))

    def areas(self, decay: float | None = None) -> tuple[float, float, float]:
        """S1 and S2 after step ``end`` (annealing momentum ``decay``, default DECAY), and the total decrease of the
        learning rate up to it."""
        decay = DECAY if decay is None else decay
        known = min(len(self.prefix), self.end)
        prefix = np.asarray(self.prefix[:known], dtype=float)
        s1 = float(prefix.sum())
        total_drop = float(np.maximum(prefix[:-1] - prefix[1:], 0.0).sum()) if known > 1 else 0.0
        function = (lambda x: schedule_factors(self.schedule, x)) if self.schedule is not None else None
        for start, stop in self._pieces():
            if start > 0:  # the step from the previous piece (or the prefix) into this one
                pair = self.factors(start - 1, start + 1)
                total_drop += max(pair[0] - pair[1], 0.0)
            if stop - start <= 2 * _EXACT + 1:
                values = self.factors(start, stop)
                s1 += float(values.sum())
                total_drop += float(np.maximum(values[:-1] - values[1:], 0.0).sum())
                continue
            head, tail = self.factors(start, start + _EXACT), self.factors(stop - _EXACT, stop)
            # sum of f(i), i in [start+E, stop-E), by the midpoint rule: the integral over [start+E-1/2, stop-E-1/2]
            s1 += float(head.sum() + tail.sum()) + _graded_integral(function, start + _EXACT - 0.5,
                                                                     stop - _EXACT - 0.5)
            # decreases inside the piece: it is monotone, so the sum over a grid that holds its ends is exact
            grid = np.unique(np.concatenate([np.arange(start, start + _EXACT), np.arange(stop - _EXACT, stop),
                                             np.geomspace(_EXACT, stop - start - _EXACT, 64).round() + start]))
            values = schedule_factors(self.schedule, grid)
            total_drop += float(np.maximum(values[:-1] - values[1:], 0.0).sum())
        # S2 = sum_k d_k (1 - lambda^(end - k)) / (1 - lambda) (0-based k); lambda^(end-k) matters only near the end
        first = max(0, self.end - _TAIL - 1)
        values = self.factors(first, self.end)
        drops = np.maximum(values[:-1] - values[1:], 0.0)  # the decreases at steps first+1 .. end-1
        recent = float(np.sum(drops * decay ** (self.end - np.arange(first + 1, self.end))))
        return s1, (total_drop - recent) / (1.0 - decay), total_drop


# ---------------------------------------------------------------------------------------------- the fit
@dataclass
class _Points:
    """Loss points of one or more curves; a point is the mean of the law over its member steps (a validation loss
    has one member, a bin of training losses one per step). Points of ``group`` 1 (training-loss bins that give the
    shape of a curve whose validation points are too few) are the law times exp(offset): the train/val ratio."""

    s1: np.ndarray
    s2: np.ndarray
    segment: np.ndarray  # the point of each member
    loss: np.ndarray
    scale: np.ndarray  # the noise of each point (log space): residuals are divided by it
    group: np.ndarray  # 0: the forecast's own quantity; 1: shifted by the offset
    weight: np.ndarray  # of each point's residual (on top of 1 / scale)

    @property
    def has_offset(self) -> bool:
        return bool(self.group.any())

    def predicted(self, params, offset: float = 0.0) -> np.ndarray:
        values = law(params, self.s1, self.s2)
        mean = np.bincount(self.segment, weights=values, minlength=len(self.loss)) / \
            np.bincount(self.segment, minlength=len(self.loss))
        return mean * np.exp(offset * self.group)

    def subset(self, pick: np.ndarray) -> "_Points":
        """The points ``pick`` (with repeats: a bootstrap resample)."""
        members = [np.flatnonzero(self.segment == p) for p in pick]
        index = np.concatenate(members)
        segment = np.concatenate([np.full(len(m), i) for i, m in enumerate(members)])
        return _Points(self.s1[index], self.s2[index], segment, self.loss[pick], self.scale[pick], self.group[pick],
                       self.weight[pick])


def _to_params(x: np.ndarray, identified: bool, max_decrease: float, decay: float) -> np.ndarray:
    """(L_inf, log A, alpha[, g]) -> (L0, A, alpha, C): g = C * max_decrease / (1 - decay), what an infinitely long
    anneal by max_decrease gains."""
    gain = x[3] if identified else 0.0
    return np.array([x[0] + gain, math.exp(x[1]), x[2], gain * (1.0 - decay) / max_decrease])


def _fit_params(points: _Points, identified: bool, max_decrease: float, initial: float, decay: float,
                start: tuple | None = None) -> tuple[np.ndarray, float, float]:
    """(L0, A, alpha, C) and the train/val log offset minimising a Huber loss of the noise-scaled log residuals, from
    several starting points (or from ``start``, a previous fit: the bootstrap refits); scipy's trust-region least
    squares with bounds."""
    from scipy.optimize import least_squares

    log_loss = np.log(points.loss)
    core = 4 if identified else 3
    offset = points.has_offset

    def residuals(x):
        predicted = points.predicted(_to_params(x[:core], identified, max_decrease, decay),
                                     x[core] if offset else 0.0)
        return (np.log(np.maximum(predicted, 1e-9)) - log_loss) * points.weight / points.scale

    own = points.loss[points.group == 0]
    floor = float(own.min() if len(own) else points.loss.min())
    lower = [0.0, -20.0, ALPHA_MIN] + ([0.0] if identified else []) + ([-1.0] if offset else [])
    upper = [floor * (1 - 1e-9), 20.0, ALPHA_MAX] + ([max(initial, floor)] if identified else []) + \
        ([1.0] if offset else [])
    first = int(np.argmin(points.s1))
    first_loss = float(points.loss[points.segment[first]])
    if start is not None:
        (l0, a, alpha, c), rho = start
        gain = c * max_decrease / (1.0 - decay)
        starts = [[min(l0 - gain, 0.99 * floor), math.log(max(a, 1e-9)), alpha] + ([gain] if identified else [])
                  + ([rho] if offset else [])]
    else:
        starts = []
        for l_inf, alpha, gain in itertools.product((0.3 * floor, 0.7 * floor), (0.3, 0.8),
                                                   (0.0, 0.1 * floor) if identified else (0.0,)):
            a = max(first_loss - l_inf - gain, 1e-3) * float(points.s1[first]) ** alpha
            starts.append([l_inf, math.log(a), alpha] + ([gain] if identified else []) + ([0.0] if offset else []))
    best, best_cost = None, math.inf
    for guess in starts:
        guess = np.clip(guess, lower, np.array(upper) - 1e-9)
        result = least_squares(residuals, guess, bounds=(lower, upper), loss="huber", f_scale=HUBER_SCALE,
                               x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=400)
        if result.cost < best_cost:
            best, best_cost = result.x, result.cost
    return _to_params(best[:core], identified, max_decrease, decay), float(best[core]) if offset else 0.0, \
        float(best_cost)


def point_noise(losses) -> float:
    """The noise of one point of a curve (log space), from the second differences of its log losses (a robust
    scale: the trend and its slow curvature cancel, a point's own noise does not)."""
    log_loss = np.log(np.asarray(losses, dtype=float))
    if len(log_loss) < 5:
        return math.nan
    second = log_loss[2:] - 2 * log_loss[1:-1] + log_loss[:-2]
    mad = float(np.median(np.abs(second - np.median(second))))
    return max(1.4826 * mad / math.sqrt(6.0), NOISE_FLOOR)


@dataclass
class Fit:
    """A fitted law and what it was fitted on (``steps``/``losses``: the run's own points; ``branch_points``: those
    of its cool-down branches fitted jointly with it)."""

    params: list[float]
    scale: float  # learning rates are divided by this (the run's peak) before the areas are taken
    source: str  # "validation loss" or "training loss"
    steps: list[int]
    losses: list[float]
    residual_rms: float
    warnings: list[str] = field(default_factory=list)
    bootstrap: list[list[float]] = field(default_factory=list)
    noise: float = math.nan  # the noise of one point (log space) the intervals add
    identified: bool = True  # whether the fitted histories decay enough for C to be estimated
    max_decrease: float = 1.0  # the largest learning-rate decrease the positivity bound covers (units of the peak)
    fitted_decrease: float = 0.0  # the largest decrease any fitted history reached by its last fitted point
    outside: int = 0  # fitted points outside their 5-95% band
    offset: float = 0.0  # log of the training/validation loss ratio (when training bins gave the curve its shape)
    decay: float = DECAY  # lambda of the annealing momentum the areas were taken with
    bootstrap_decays: list[float] = field(default_factory=list)  # ... and those of the bootstrap refits
    s1_range: list[float] = field(default_factory=list)  # the smallest and largest forward area of a fitted point
    s2_max: float = 0.0  # the largest annealing area of a fitted point
    initial_loss: float | None = None
    branch_points: list[dict] = field(default_factory=list)  # {"run", "step", "steps", "losses"}
    notes: list[str] = field(default_factory=list)  # what the fit did that does not make it less trustworthy

    def curve(self, lrs: np.ndarray, params=None, decay: float | None = None) -> np.ndarray:
        """The law along per-step learning rates (``params``/``decay``: a bootstrap fit's, zipped from
        ``bootstrap`` and ``bootstrap_decays``)."""
        s1, s2 = areas(np.asarray(lrs) / self.scale, self.decay if decay is None else decay)
        return law(self.params if params is None else params, s1, s2)

    def draws(self) -> list[tuple[list[float], float]]:
        """The bootstrap fits with the annealing momentum each was fitted with."""
        decays = self.bootstrap_decays if len(self.bootstrap_decays) == len(self.bootstrap) else \
            [self.decay] * len(self.bootstrap)
        return list(zip(self.bootstrap, decays))

    def final(self, lrs: np.ndarray) -> tuple[float, float, float]:
        """The loss after the last step of ``lrs`` with its 5-95% prediction interval (bootstrap and noise)."""
        lrs = np.asarray(lrs) / self.scale
        at = {d: tuple(a[-1] for a in areas(lrs, d)) for d in {self.decay, *(d for _, d in self.draws())}}
        return self._interval(at)[:3]

    def predict(self, plan: "Plan") -> tuple[float, float, float, float, float]:
        """Value, 5-95% prediction interval and the curve's own bootstrap interval at the end of ``plan``."""
        return self._interval({d: plan.areas(d)[:2] for d in {self.decay, *(d for _, d in self.draws())}})

    def _interval(self, at: dict) -> tuple[float, float, float, float, float]:
        """``at``: (S1, S2) for each annealing momentum."""
        value = float(law(self.params, *at[self.decay]))
        if self.bootstrap:
            draws = [float(law(p, *at[d])) for p, d in self.draws()]
            curve_low, curve_high = float(np.percentile(draws, 5)), float(np.percentile(draws, 95))
        else:
            curve_low = curve_high = value
        noise = _Z * (self.noise if math.isfinite(self.noise) else 0.0) * value
        low = value - math.hypot(max(value - curve_low, 0.0), noise)
        high = value + math.hypot(max(curve_high - value, 0.0), noise)
        return value, low, high, curve_low, curve_high

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


def peak_lr(run: Run) -> float:
    """The peak learning rate the areas are measured in: the configured max_lr, else the largest logged."""
    configured = run.settings.get("max_lr")
    history = lr_history(run)
    return float(configured or (history.max() if len(history) else 1.0))


def run_schedule(run: Run, max_steps: int | None = None, **changes) -> Schedule:
    """The run's schedule as configured (with its latest re-plan, if a resume made one), optionally with another
    length or shape (``changes``: then another schedule from the start, without the re-plan)."""
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


def fresh_schedule(run: Run, max_steps: int, **changes) -> Schedule:
    """The schedule a fresh run of ``max_steps`` steps with the run's settings (and ``changes``) would follow: no
    re-plan, no cool-down branch point."""
    train = {key: value for key, value in run.settings.items() if key != "cooldown_steps"}
    train.update(max_steps=max_steps, **changes)
    return Schedule.from_args(train)


def continued_schedule(run: Run, max_steps: int | None, last: int) -> Schedule:
    """The schedule this run follows after its last logged step ``last`` up to ``max_steps``: its own, or, for another
    length, the one a resume with ``--max_steps`` would re-plan at that step (training/run/resumption.py)."""
    own = run_schedule(run)
    if max_steps is None or max_steps == own.max_steps:
        return own
    return fresh_schedule(run, max_steps).replanned(own, last)


def planned_lrs(run: Run, schedule: Schedule, keep_history: bool) -> np.ndarray:
    """Learning rates of steps 1..schedule.max_steps: the logged ones followed by ``schedule`` (the run's own
    future), or ``schedule`` from the start (another schedule). Per-step arrays (plots): refused past PLANNED_LIMIT
    steps; forecasts use ``Plan``, which has no such limit."""
    if schedule.max_steps > PLANNED_LIMIT:
        raise ValueError(f"{schedule.max_steps:,} steps: too long for a per-step array of learning rates "
                         f"(at most {PLANNED_LIMIT:,}); forecasts of any length use Plan.areas()")
    peak = peak_lr(run)
    planned = peak * schedule.factors()
    if keep_history:
        history = lr_history(run)[: schedule.max_steps]
        planned[: len(history)] = history
    return planned


# ---------------------------------------------------------------------------------------------- what to fit
def _epoch_steps(run: Run) -> float | None:
    """Steps in one epoch of the run's training data: its size over the tokens per step, else the first step the
    logs count as a second epoch."""
    tokens_per_step = run.tokens_per_step
    if run.dataset_tokens and tokens_per_step:
        return run.dataset_tokens / tokens_per_step
    if run.has(Tags.TRAIN_EPOCH):
        later = [step for step, epoch in run.scalars[Tags.TRAIN_EPOCH].items() if epoch >= 1]
        if later:
            return float(min(later) - 1)
    return None


def _initial_loss(run: Run) -> float | None:
    """The loss the run started from: its earliest logged loss (training or validation, whichever was logged first;
    the larger at a tie). Not the first validation: at step 25 of a diverging run that is already far above it."""
    first = []
    for tag in (Tags.TRAIN_LOSS, Tags.VAL_LOSS):
        steps, loss = run.series(tag)
        keep = np.isfinite(loss)
        if keep.any():
            first.append((float(steps[keep][0]), -float(loss[keep][0])))
    return -min(first)[1] if first else None


def diverged(run: Run) -> str | None:
    """Why the law cannot describe this run, if it diverged: non-finite losses, or a smoothed training loss that
    climbed back DIVERGENCE_RISE above its minimum with the validation loss agreeing (the report's criteria)."""
    from .summaries import finite_smoothed
    from .thresholds import DIVERGENCE_RISE, VAL_AGREES_RISE

    steps, loss = run.series(Tags.TRAIN_LOSS)
    val_steps, val = run.series(Tags.VAL_LOSS)
    for name, where, values in (("training", steps, loss), ("validation", val_steps, val)):
        bad = ~np.isfinite(values)
        if bad.any():
            return (f"the run diverged: {int(bad.sum())} non-finite {name} loss(es), the first at step "
                    f"{int(where[bad][0])}; the law describes a converging run")
    if len(loss) < 3:
        return None
    smooth = finite_smoothed(loss)
    start = _initial_loss(run)
    ended = min(float(smooth[-1]), float(val[-1]) if len(val) else math.inf)
    if start is not None and ended > start + DIVERGENCE_RISE:
        return (f"the run diverged: its loss ended at {ended:.3f}, above where it started ({start:.3f}); the law "
                "describes a converging run")
    low = int(np.argmin(smooth))
    rise = float(smooth[-1] - smooth[low])
    val_agrees = len(val) < 2 or float(val[-1] - val.min()) > VAL_AGREES_RISE
    if rise > DIVERGENCE_RISE and val_agrees:
        return (f"the run diverged: its smoothed training loss climbed {rise:.2f} nats above its minimum "
                f"({smooth[low]:.3f} at step {int(steps[low])}) by step {int(steps[-1])}; the law describes a "
                "converging run")
    return None


def _binned(steps: np.ndarray, loss: np.ndarray, bins: int) -> tuple[list[np.ndarray], np.ndarray]:
    if not len(steps):
        return [], np.array([])
    groups = [g for g in np.array_split(np.arange(len(steps)), min(bins, len(steps))) if len(g)]
    return [steps[g].astype(int) for g in groups], np.array([float(loss[g].mean()) for g in groups])


def _curve_points(run: Run, source: str, after: int, last: int, bins: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(member steps of each point, loss of each point) of ``run`` in (after, last]."""
    tag = Tags.VAL_LOSS if source == "validation loss" else Tags.TRAIN_LOSS
    steps, loss = run.series(tag)
    keep = (steps > after) & (steps <= last) & np.isfinite(loss) & (loss > 0)
    steps, loss = steps[keep], loss[keep]
    if tag == Tags.VAL_LOSS:
        return [np.array([int(s)]) for s in steps], loss
    return _binned(steps, loss, bins)


@dataclass
class _Curve:
    name: str
    history: np.ndarray  # factors of steps 1..len
    members: list[np.ndarray]
    loss: np.ndarray
    branch_step: int = 0
    groups: np.ndarray | None = None  # 0: the forecast's quantity, 1: training bins shifted by the fitted ratio

    def __post_init__(self):
        if self.groups is None:
            self.groups = np.zeros(len(self.loss), dtype=int)


def find_branches(run: Run) -> list[Path]:
    """Run folders beside ``run`` whose branch.json names it as their parent (scripts/cooldown.py's branches)."""
    try:
        here = Path(run.run_dir).resolve()
        if not here.is_dir() or here == here.parent:
            return []
        found = []
        for folder in sorted(here.parent.iterdir()):
            record = _branch_record(folder)
            if folder != here and record and Path(record.get("parent_run", "")).resolve() == here \
                    and not abandoned_line(record):
                found.append(folder)
        return found
    except OSError:
        return []


def _branch_record(folder: Path) -> dict | None:
    path = RunLayout(folder).branch_file
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _load_branches(run: Run, branches) -> tuple[list[Run], list[str]]:
    """Branch runs (given as Run objects or folders; None: the ones beside the run), and notes on those left out."""
    from .runs import RunReadError, load_run

    notes, loaded = [], []
    explicit = branches is not None
    for branch in (find_branches(run) if branches is None else branches):
        if isinstance(branch, Run):
            loaded.append(branch)
            continue
        record = _branch_record(Path(branch))
        if not record:
            notes.append(f"{branch}: not a branch (no branch.json), left out of the fit")
            continue
        if explicit and Path(record.get("parent_run", "")).resolve() != Path(run.run_dir).resolve():
            notes.append(f"{branch}: a branch of {record.get('parent_run')}, not of this run; left out of the fit")
            continue
        if abandoned_line(record):
            notes.append(f"{branch}: branched from {record.get('checkpoint')}, on a line of this run that a rollback "
                         "or resume abandoned (its history is not this run's); left out of the fit")
            continue
        try:
            loaded.append(load_run(branch))
        except (OSError, RunReadError, ValueError) as error:
            notes.append(f"{branch}: could not be read ({error}); left out of the fit")
    return loaded, notes


def _branch_curve(branch: Run, source: str, peak: float, first_epoch: float | None) -> tuple[_Curve | None, str]:
    record = branch.branch or {}
    step = int(record.get("step", 0))
    history = lr_history(branch)
    lr_steps, _ = branch.series(Tags.TRAIN_LR)
    name = branch.name
    if not step or not len(lr_steps) or lr_steps.min() > step:
        return None, (f"{name}: its parent's learning rates up to the branch step were not found (its parent_run "
                      "moved?); left out of the fit")
    last = len(history) if first_epoch is None else min(len(history), int(first_epoch))
    members, loss, groups = _points_of(branch, source, step, last, bins=10)
    quantity = "validation loss" if source == "calibrated" else source
    if not (groups == 0).any():
        return None, f"{name}: no {quantity} after its branch step {step}; left out of the fit"
    note = (f"fitted jointly with its branch {name} ({int((groups == 0).sum())} point(s) of its {quantity} after "
            f"step {step})")
    return _Curve(name, history / peak, members, loss, step, groups), note


def _areas_of(curve: _Curve, decay: float) -> tuple[np.ndarray, np.ndarray]:
    s1, s2 = areas(curve.history, decay)
    index = np.concatenate(curve.members) - 1
    return s1[index], s2[index]


def _points_for(curves: list[_Curve], noise: dict, decay: float) -> _Points:
    """All curves' points with their areas for the annealing momentum ``decay``."""
    s1, s2, segment, loss, scale, group = [], [], [], [], [], []
    for curve in curves:
        a1, a2 = _areas_of(curve, decay)
        first = len(loss)
        s1.append(a1)
        s2.append(a2)
        segment.append(np.concatenate([np.full(len(m), first + i) for i, m in enumerate(curve.members)]))
        loss.extend(curve.loss.tolist())
        group.extend(curve.groups.tolist())
        scale.extend(noise[g] for g in curve.groups)
    points = _Points(np.concatenate(s1), np.concatenate(s2), np.concatenate(segment), np.array(loss),
                     np.array(scale), np.array(group), np.ones(len(loss)))
    if LATE_WEIGHT:
        centre = np.bincount(points.segment, weights=points.s1) / np.bincount(points.segment)
        points.weight = (centre / centre.max()) ** LATE_WEIGHT
    return points


def _chosen_decay(costs: dict[float, float]) -> float:
    """DECAY, unless another lambda fits better by more than DECAY_EVIDENCE."""
    best = min(costs, key=costs.get)
    return best if DECAY not in costs or costs[DECAY] - costs[best] > DECAY_EVIDENCE else DECAY


def _decayed_points(curve: _Curve) -> tuple[float, int]:
    """The learning-rate decrease of ``curve`` up to its last fitted point, and how many of its points come after
    the learning rate had fallen MIN_DECAY / 2 below its largest value so far."""
    last = int(max(m.max() for m in curve.members))
    history = curve.history[:last]
    fallen = np.maximum.accumulate(history) - history
    drops = np.maximum(history[:-1] - history[1:], 0.0).sum() if len(history) > 1 else 0.0
    count = sum(1 for m in curve.members if fallen[int(m.max()) - 1] >= MIN_DECAY / 2)
    return float(drops), count


def _points_of(run: Run, source: str, after: int, last: int, bins: int) -> tuple[list[np.ndarray], np.ndarray,
                                                                                  np.ndarray]:
    """(members, losses, groups) of ``run`` in (after, last] for a fit ``source``: "validation loss", "training
    loss", or "calibrated" (its validation points, group 0, and its binned training losses, group 1)."""
    if source != "calibrated":
        members, losses = _curve_points(run, source, after, last, bins)
        return members, losses, np.zeros(len(losses), dtype=int)
    val_members, val = _curve_points(run, "validation loss", after, last, bins)
    train_members, train = _curve_points(run, "training loss", after, last, bins)
    return val_members + train_members, np.concatenate([val, train]), \
        np.concatenate([np.zeros(len(val), dtype=int), np.ones(len(train), dtype=int)])


def _fitted_range(run: Run, history: np.ndarray, after: int, warnings: list, notes: list) -> tuple[int, float | None]:
    """The last step fitted (the first epoch's end when the run read its data again and that epoch has enough
    points: the law assumes fresh data), and the epoch's length in steps (None: read once)."""
    epoch = _epoch_steps(run)
    last = len(history)
    if epoch is not None and epoch < last:
        within = max(len(_curve_points(run, source, after, int(epoch), BINS)[1])
                     for source in ("validation loss", "training loss"))
        if within >= MIN_POINTS:
            notes.append(f"fitted on the first epoch of its data only (steps up to {int(epoch)}): the law assumes "
                         "fresh data")
            last = int(epoch)
        else:
            warnings.append("the run read its data more than once: the law assumes fresh data, so past the first "
                            "epoch the loss falls slower than forecast")
    return last, epoch


def _fitted_source(run: Run, after: int, last: int, notes: list) -> tuple[str, str]:
    """What the law is fitted to, and how the report names it: the validation loss when it was measured often
    enough, else its few points calibrating the binned training loss's shape, else the training loss itself."""
    val_count = len(_curve_points(run, "validation loss", after, last, BINS)[1])
    train_count = len(_curve_points(run, "training loss", after, last, BINS)[1])
    if val_count >= MIN_POINTS:
        return "validation loss", "validation loss"
    if val_count >= MIN_CALIBRATION and train_count >= MIN_POINTS:
        return "calibrated", (f"validation loss ({val_count} points; the curve's shape also from {train_count} bins "
                              "of its training loss, scaled by a fitted train/val ratio)")
    if train_count:
        notes.append(f"fitted on its training loss (binned means): fewer than {MIN_CALIBRATION} validations "
                     "after warmup; the forecasts are of the training loss")
    return "training loss", "training loss (binned means; fewer validations than needed)"


def _identification(curves: list, settings: dict, history: np.ndarray, peak: float) -> tuple[bool, float, float]:
    """Whether C is identified (the fitted histories decreased the learning rate by MIN_DECAY of the peak, with
    points after it), the largest decrease fitted, and the largest the law may assume (the schedule's floor)."""
    decreases = [_decayed_points(c) for c in curves]
    fitted_decrease = max(d for d, _ in decreases)
    decayed = sum(n for d, n in decreases if d >= MIN_DECAY)
    identified = fitted_decrease >= MIN_DECAY and decayed >= MIN_DECAYED_POINTS
    floor_ratio = float(settings["min_lr"]) / float(settings["max_lr"]) if settings.get("max_lr") and \
        settings.get("min_lr") is not None else float(history.min() / peak)
    max_decrease = max(1.0 - floor_ratio, max(float(np.maximum(c.history[:-1] - c.history[1:], 0).sum())
                                               for c in curves if len(c.history) > 1), MIN_DECAY)
    return identified, fitted_decrease, max_decrease


def _group_noise(losses: np.ndarray, groups: np.ndarray) -> dict[int, float]:
    """The noise of a point of each group: its point-to-point scatter (validation points too few for that: the
    training bins')."""
    noise = {g: point_noise(losses[groups == g]) for g in (0, 1)}
    fallback = next((v for v in (noise[1], noise[0]) if math.isfinite(v)), 0.01)
    return {g: v if math.isfinite(v) else fallback for g, v in noise.items()}


def fit_run(run: Run, bootstrap: int = BOOTSTRAP, seed: int = 0, branches=None) -> Fit | None:
    """Fit the law to a run (jointly with its cool-down branches: ``branches`` as folders or Run objects; None finds
    them beside the run). None when there is nothing to fit (no learning rate or loss logged); a Fit without params
    (and the reason in its warnings) when the run cannot be fitted."""
    history = lr_history(run)
    warmup = int(run.settings.get("warmup_steps", 0) or 0)
    if not len(history):
        return None
    after = round(FIRST_STEP * warmup)  # the first fitted point comes after this step
    peak, initial = peak_lr(run), _initial_loss(run)
    if broken := diverged(run):
        return Fit([], peak, "validation loss", [], [], math.nan, [broken], initial_loss=initial)
    warnings, notes = [], []
    last, epoch = _fitted_range(run, history, after, warnings, notes)
    source, label = _fitted_source(run, after, last, notes)
    members, losses, groups = _points_of(run, source, after, last, BINS)
    own = groups == 0
    steps = np.array([int(m.max()) for m, g in zip(members, groups) if g == 0], dtype=int)
    count = len(losses)
    if count < MIN_POINTS:
        warnings.append(f"only {count} loss point(s) after warmup (at least {MIN_POINTS} are needed)")
    if len(history) <= warmup:
        warnings.append(f"the run is still in its warmup ({len(history)} of {warmup} steps): the law describes "
                        "the loss after it")
    if count < 4:
        return Fit([], peak, label, steps.tolist(), losses[own].tolist(), math.nan,
                   warnings + ["too few points to fit"], initial_loss=initial, notes=notes)
    curves = [_Curve(run.name, history / peak, members, losses, groups=groups)]
    curves += _branch_curves(run, branches, source, peak, epoch, notes)
    identified, fitted_decrease, max_decrease = _identification(curves, run.settings, history, peak)
    noise = _group_noise(losses, groups)
    initial_bound = initial if initial is not None else float(losses.max())
    # lambda matters only through S2: fitted when C is. The paper's value unless the data prefer another clearly
    # (a Huber cost, in units of the points' noise, lower by DECAY_EVIDENCE).
    candidates = {decay: _points_for(curves, noise, decay) for decay in (DECAYS if identified else (DECAY,))}
    fits = {decay: _fit_params(candidate, identified, max_decrease, initial_bound, decay)
            for decay, candidate in candidates.items()}
    decay = _chosen_decay({d: f[2] for d, f in fits.items()})
    points, (params, offset, _) = candidates[decay], fits[decay]
    main = (np.log(points.predicted(params, offset)) - np.log(points.loss))[:count][own]
    fit = Fit(list(map(float, params)), peak, label, steps.tolist(), losses[own].tolist(),
              float(np.sqrt(np.mean(main ** 2))), warnings, identified=identified, max_decrease=max_decrease,
              fitted_decrease=fitted_decrease, initial_loss=initial, notes=notes, offset=offset, decay=decay)
    _describe_fitted_points(fit, points, curves, count)
    # The noise of a forecast point: its scatter, or the residuals' robust scale when the law misses by more.
    residual_scale = 1.4826 * float(np.median(np.abs(main - np.median(main)))) if len(main) >= 5 else 0.0
    fit.noise = max(noise[0], residual_scale)
    _bootstrap(fit, candidates, fits, (identified, max_decrease, initial_bound), bootstrap, seed)
    _check_coverage(fit, candidates, points, count, losses)
    return fit


def _branch_curves(run: Run, branches, source: str, peak: float, epoch, notes: list) -> list:
    """The curves of the run's cool-down branches that can join the fit (each says why, or why not, in ``notes``)."""
    branch_runs, branch_notes = _load_branches(run, branches)
    notes += branch_notes
    curves = []
    for branch in branch_runs:
        curve, note = _branch_curve(branch, source, peak, epoch)
        notes.append(note)
        if curve is not None:
            curves.append(curve)
    return curves


def _describe_fitted_points(fit: Fit, points, curves: list, count: int) -> None:
    """The S1 range the run's own points span, the largest S2 fitted, and the branches' points (for the plot)."""
    centre = np.bincount(points.segment, weights=points.s1) / np.bincount(points.segment)
    fit.s1_range = [float(centre[:count].min()), float(centre[:count].max())]
    fit.s2_max = float(points.s2.max())
    for curve in curves[1:]:
        fit.branch_points.append({"run": curve.name, "step": curve.branch_step,
                                  "steps": [int(m.max()) for m, g in zip(curve.members, curve.groups) if g == 0],
                                  "losses": curve.loss[curve.groups == 0].tolist()})


def _bootstrap(fit: Fit, candidates: dict, fits: dict, bounds: tuple, bootstrap: int, seed: int) -> None:
    """Refit on resampled points (each refit choosing its own lambda): the curve's spread for the intervals."""
    identified, max_decrease, initial_bound = bounds
    points = candidates[fit.decay]
    rng = np.random.default_rng(seed)
    total = len(points.loss)
    for _ in range(bootstrap):
        pick = np.sort(rng.integers(0, total, total))
        if len(set(pick.tolist())) < 4 or (points.has_offset and not (points.group[pick] == 0).any()):
            continue
        refits = {other: _fit_params(candidate.subset(pick), identified, max_decrease, initial_bound, other,
                                     start=(fits[other][0], fits[other][1])) for other, candidate in candidates.items()}
        chosen = _chosen_decay({d: r[2] for d, r in refits.items()})
        fit.bootstrap.append(list(map(float, refits[chosen][0])))
        fit.bootstrap_decays.append(chosen)


def _check_coverage(fit: Fit, candidates: dict, points, count: int, losses: np.ndarray) -> None:
    """Honest intervals: the fit's own points against their band (the curve's spread and one point's noise from the
    scatter alone, not from the residuals the check is about); a fit missing too many is untrusted."""
    from scipy.stats import binom

    offset = fit.offset
    draws = np.array([candidates[d].predicted(p, offset)[:count] for p, d in fit.draws()]) if fit.bootstrap \
        else None
    value = points.predicted(np.asarray(fit.params), offset)[:count]
    spread = _Z * np.array(points.scale[:count]) * value
    low = value - np.hypot(value - (np.percentile(draws, 5, axis=0) if draws is not None else value), spread)
    high = value + np.hypot((np.percentile(draws, 95, axis=0) if draws is not None else value) - value, spread)
    outside = int(np.sum((losses < low) | (losses > high)))
    fit.outside = outside
    if outside > 2 and binom.sf(outside - 1, count, 1 - COVERAGE) < MAX_OUTSIDE_CHANCE:
        fit.warnings.append(f"{outside} of its {count} fitted points lie outside the 5-95% band of the fit "
                            f"(about {round((1 - COVERAGE) * count)} expected): the law does not follow this "
                            "curve within its noise")


# ---------------------------------------------------------------------------------------------- forecasts
@dataclass
class Forecast:
    """What a run's fit predicts. Each row (``current_schedule``, ``horizons``): what (its label, saying whether it
    continues this run or starts a fresh one), kind ("continuing" or "fresh"), steps, tokens, loss, low-high (the 5-95%
    prediction interval of a measured loss), curve_low-curve_high (the fitted curve's own 5-95%), trusted and
    warnings (why not). ``refused``: rows the law cannot answer, with the reason. ``trusted``: whether the headline
    forecast (``current_schedule``) is."""

    fit: dict
    trusted: bool
    warnings: list[str]
    last_step: int
    tokens_per_step: float
    current_schedule: dict | None = None  # this run continued to the end of its schedule (or --max_steps)
    horizons: list[dict] = field(default_factory=list)  # other lengths / schedules
    target: dict | None = None  # tokens to reach a target loss
    refused: list[dict] = field(default_factory=list)  # {what, steps, reason}
    advice: str | None = None  # what would make the forecast trustworthy (e.g. a cool-down branch to run)
    epoch_steps: float | None = None
    initial_loss: float | None = None
    interval: str = ("low-high: 5-95% prediction interval of a measured loss at that step (the bootstrap spread of "
                     "the fitted curve combined with one point's measurement noise)")

    def to_dict(self) -> dict:
        return asdict(self)


def _history_plan(run: Run, fit: Fit, schedule: Schedule, end: int) -> Plan:
    return Plan(lr_history(run) / fit.scale, schedule, end)


def _row(fit: Fit, plan: Plan, what: str, kind: str, steps: int, tokens_per_step: float, epoch: float | None) -> dict:
    """A forecast row, or a refusal (``{"refused": reason}``)."""
    s1, s2, decrease = plan.areas(fit.decay)
    value, low, high, curve_low, curve_high = fit.predict(plan)
    warnings, notes = [], []
    initial = fit.initial_loss if fit.initial_loss is not None else max(fit.losses)
    if decrease > fit.max_decrease + 1e-6:
        warnings.append(f"its learning rate falls by {decrease:.3g}x the peak in all, more than the "
                        f"{fit.max_decrease:.3g}x the fit's bound covers")
    if not (math.isfinite(value) and 0 < value <= initial):
        return {"what": what, "kind": kind, "steps": steps, "refused": (
            f"the law gives {value:.4g}, outside (0, {initial:.4g}] (the run's initial loss): "
            + ("a schedule shorter than the fitted range" if value > initial else "an impossible loss")
            + "; not a forecast")}
    if not fit.identified and decrease > fit.fitted_decrease + MIN_DECAY / 2:
        # C is unknown: the interval spans every annealing gain the positivity bound allows (none .. all of L0),
        # with the shortest annealing memory the fit would try (the largest gain of a short cool-down).
        shortest = min(DECAYS)
        largest_c = fit.params[0] * (1.0 - shortest) / fit.max_decrease
        most_gain = value - largest_c * plan.areas(shortest)[1]
        low, curve_low = min(low, most_gain - (value - low)), min(curve_low, most_gain)
        warnings.append(f"its learning rate decays ({decrease:.2g}x the peak) where the fitted history did not "
                        f"({fit.fitted_decrease:.2g}x): C, the gain of annealing, is not identified, so the forecast "
                        "assumes no gain from the decay and the interval spans any gain the law allows")
    if kind == "fresh":  # another run: its own luck (init, data order) is not in this run's curve
        spread = _Z * FRESH_SPREAD * value
        low, high = value - math.hypot(value - low, spread), value + math.hypot(high - value, spread)
    if fit.identified and fit.s2_max > 0 and s2 > 2 * FAR_BEYOND * fit.s2_max:
        warnings.append(f"its annealing area S2 is {s2 / fit.s2_max:.3g}x the largest fitted: the gain of that much "
                        "annealing is extrapolated (a longer cool-down branch would measure it)")
    last_fitted = max(fit.steps)
    if steps > FAR_BEYOND * last_fitted:
        warnings.append(f"{steps / last_fitted:.3g}x past the last fitted step ({last_fitted:,}): extrapolation")
    if fit.s1_range and s1 < fit.s1_range[0]:
        warnings.append("shorter than the fitted range (its forward area is below every fitted point's)")
    if epoch is not None and steps > epoch:
        warnings.append(f"past one epoch of its data ({int(epoch):,} steps): repeated data, and the law assumes "
                        "fresh data (the loss falls slower than forecast)")
    elif epoch is None:
        notes.append("the data size is unknown: whether this reads the data more than once cannot be told")
    low, high = max(low, 1e-9), min(high, initial)
    return {"what": what, "kind": kind, "steps": steps, "tokens": steps * tokens_per_step, "loss": value,
            "low": low, "high": high, "curve_low": max(curve_low, 1e-9), "curve_high": min(curve_high, initial),
            "trusted": not warnings and fit.trusted, "warnings": warnings, "notes": notes,
            "far_beyond_fit": steps > FAR_BEYOND * last_fitted, "past_epoch": bool(epoch is not None and steps > epoch)}


def describe(schedule: Schedule) -> str:
    """``Schedule.describe``, with a purely stable WSD (no cool-down) said as such."""
    if schedule.anchor is None and schedule.kind == "wsd" and schedule.decay_steps == 0:
        return f"wsd without a cool-down: warmup {schedule.warmup_steps}, then the peak to step {schedule.max_steps}"
    return schedule.describe()


def _fresh_label(schedule: Schedule, steps: int) -> str:
    return f"a fresh run of {steps:,} steps with {describe(schedule)} from step 0 (same peak lr, batch, model)"


def cooldown_command(run: Run, last: int) -> str:
    """The scripts/cooldown.py command that branches a short cool-down from the run's latest checkpoint."""
    layout = RunLayout(run.run_dir)
    checkpoints = []
    if layout.checkpoints_dir.is_dir():
        checkpoints = sorted((step, path) for path in layout.checkpoints_dir.iterdir()
                             if (step := checkpoint_step(path.name)) is not None and step <= last)
    if checkpoints:
        step, path = checkpoints[-1]
        steps = max(1, round(COOLDOWN_FRACTION * step))
        return (f"python scripts/cooldown.py {path} --steps {steps} --eval_every {max(1, steps // 8)} (a cool-down "
                f"branch beside the run, {round(COOLDOWN_FRACTION * 100)}% of its steps; forecast again and the "
                "branch joins the fit, giving it C)")
    steps = max(1, round(COOLDOWN_FRACTION * last))
    return (f"the run has no checkpoint to branch from yet: save one (--save_every), then python scripts/cooldown.py "
            f"{layout.checkpoints_dir}/step_N --steps M --eval_every {max(1, steps // 8)} with M about "
            f"{round(COOLDOWN_FRACTION * 100)}% of N (--steps {steps} for step {last}); forecast again and the branch, "
            "beside the run, joins the fit, giving it C")


def forecast(run: Run, max_steps: int | None = None, schedules: list[dict] = (), target: float | None = None,
             bootstrap: int = BOOTSTRAP, branches=None) -> Forecast | None:
    """The run's forecasts: this run continued to the end of its schedule (or re-planned to ``max_steps``, as a
    resume would), a fresh run of one full epoch of its data with the same schedule shape, fresh runs of the given
    ``schedules`` ({"lr_schedule": ..., "max_steps": ..., "decay_steps": ...}), a cool-down from its last step when it
    ends at a stable learning rate, and the tokens a fresh run of its schedule shape needs to reach ``target``
    (default: the run's reference loss). ``branches``: its cool-down branches (None: found beside it)."""
    fit = fit_run(run, bootstrap, branches=branches)
    if fit is None:
        return None
    tokens_per_step = float(run.tokens_per_step or 0)
    last = len(lr_history(run))
    epoch = _epoch_steps(run)
    result = Forecast(fit=asdict(fit), trusted=False, warnings=list(fit.warnings), last_step=last,
                      tokens_per_step=tokens_per_step, epoch_steps=epoch, initial_loss=fit.initial_loss)
    if not fit.params:
        return result
    try:
        _add_row(result, _headline_row(run, fit, max_steps, last, tokens_per_step, epoch), headline=True)
        for row in _other_rows(run, fit, schedules, last, tokens_per_step, epoch):
            _add_row(result, row)
    except ValueError as error:  # a horizon the forecast cannot compute: refused with the reason
        result.refused.append({"what": "forecast", "steps": max_steps, "refused": str(error)})
    _conclude(result, run, fit, last)
    target = target if target is not None else run.reference_loss
    if target is not None:
        result.target = tokens_to_target(run, fit, target, tokens_per_step)
    return result


def _add_row(result: Forecast, row: dict, headline: bool = False) -> None:
    if "refused" in row:
        result.refused.append({key: row[key] for key in ("what", "kind", "steps", "refused")})
    elif headline:
        result.current_schedule = row
    else:
        result.horizons.append(row)


def _headline_row(run: Run, fit: Fit, max_steps: int | None, last: int, tokens_per_step: float, epoch) -> dict:
    """This run continued to the end of its schedule (or re-planned to ``max_steps``); a fresh run when
    ``max_steps`` is before the run's last step."""
    own = run_schedule(run)
    end = own.max_steps if max_steps is None else max_steps
    _check_length(end)
    if end < last:
        schedule = fresh_schedule(run, end)
        return _row(fit, Plan(np.array([]), schedule, end), _fresh_label(schedule, end) + f" (this run is already "
                    f"at step {last:,})", "fresh", end, tokens_per_step, epoch)
    schedule = continued_schedule(run, max_steps, last)
    if end == last:
        what = (f"this run at its last logged step {last:,} (its logged history: the fitted curve there, "
                "to compare with the measured loss)")
    elif max_steps is None or max_steps == own.max_steps:
        what = (f"continuing this run (its logged history to step {last:,}, then its schedule to step "
                f"{end:,}: {describe(schedule)})")
    else:
        what = (f"continuing this run (its logged history to step {last:,}, then its schedule re-planned to "
                f"end at step {end:,}, as a resume with --max_steps {end} would: {describe(schedule)})")
    return _row(fit, _history_plan(run, fit, schedule, end), what, "continuing", end, tokens_per_step, epoch)


def _other_rows(run: Run, fit: Fit, schedules, last: int, tokens_per_step: float, epoch):
    """One full epoch of fresh data, a cool-down from a stable end, and fresh runs of the asked ``schedules``."""
    if epoch is not None and int(epoch) > last and int(epoch) <= MAX_STEPS:
        steps = int(epoch)
        schedule = fresh_schedule(run, steps)
        yield _row(fit, Plan(np.array([]), schedule, steps), "one full epoch of its data: "
                   + _fresh_label(schedule, steps), "fresh", steps, tokens_per_step, epoch)
    own = run_schedule(run)
    if _stable_end(run, fit, own, last):
        yield _cooldown_row(run, fit, own, last, tokens_per_step, epoch)
    for spec in schedules:
        spec = dict(spec)
        steps = int(spec.pop("max_steps"))
        _check_length(steps)
        schedule = fresh_schedule(run, steps, **spec)
        yield _row(fit, Plan(np.array([]), schedule, steps), _fresh_label(schedule, steps), "fresh", steps,
                   tokens_per_step, epoch)


def _conclude(result: Forecast, run: Run, fit: Fit, last: int) -> None:
    """Whether to trust the headline (its own warnings), and the advice when C could not be identified."""
    headline = result.current_schedule
    if headline is not None:
        result.warnings += [w for w in headline["warnings"] if w not in result.warnings]
        result.trusted = bool(headline["trusted"])
    else:
        result.warnings += [r["refused"] for r in result.refused if r["refused"] not in result.warnings]
    if not fit.identified and any(not r["trusted"] and any("not identified" in w for w in r["warnings"])
                                  for r in [headline, *result.horizons] if r):
        result.advice = "to forecast a cool-down, give the fit its C: " + cooldown_command(run, last)


def _check_length(steps: int) -> None:
    if steps > MAX_STEPS:
        raise UserError(f"{steps:,} steps is beyond any horizon the forecast can compute (at most {MAX_STEPS:.0e})")


def _stable_end(run: Run, fit: Fit, own: Schedule, last: int) -> bool:
    """Whether the run ends (its schedule included) at a learning rate a cool-down could still lower."""
    history = lr_history(run) / fit.scale
    if not len(history) or last < own.max_steps:
        return False
    return float(history[-1]) >= 2 * own.min_ratio and float(history[-1]) >= 0.5


def _cooldown_row(run: Run, fit: Fit, own: Schedule, last: int, tokens_per_step: float,
                  epoch: float | None) -> dict:
    steps = max(1, round(COOLDOWN_FRACTION * last))
    schedule = replace(own, max_steps=last + steps, anchor=Anchor(last, float(lr_history(run)[-1] / fit.scale),
                                                                       "1-sqrt"))
    what = (f"continuing this run with a cool-down (its logged history to step {last:,}, then 1-sqrt decay to "
            f"{schedule.min_ratio:.4g}x the peak over {steps:,} steps, as scripts/cooldown.py --steps {steps} would)")
    return _row(fit, _history_plan(run, fit, schedule, last + steps), what, "continuing", last + steps,
                tokens_per_step, epoch)


def tokens_to_target(run: Run, fit: Fit, target: float, tokens_per_step: float, limit: int = MAX_STEPS) -> dict:
    """The smallest length of a fresh run of the run's schedule shape whose forecast final loss reaches ``target``
    (the loss falls with the length for a fixed shape: bisection), with the same for the bootstrap fits (an
    interval); None when it is not reached at any length up to ``limit`` steps. Areas by ``Plan``: no per-step
    arrays."""
    warmup = int(run.settings.get("warmup_steps", 0) or 0)
    cache: dict[tuple[int, float], tuple[float, float]] = {}

    def areas_of(steps: int, decay: float) -> tuple[float, float]:
        if (steps, decay) not in cache:
            cache[(steps, decay)] = Plan(np.array([]), fresh_schedule(run, steps), steps).areas(decay)[:2]
        return cache[(steps, decay)]

    def steps_needed(params, decay) -> int | None:
        def final(steps: int) -> float:
            return float(law(params, *areas_of(steps, decay)))

        low = max(2, warmup + 1)
        if final(low) <= target:
            return low
        high = low
        while final(high) > target:
            if high >= limit:
                return None
            low, high = high, min(limit, high * 2)
        while high - low > max(1, low // 200):
            middle = (low + high) // 2
            low, high = (low, middle) if final(middle) <= target else (middle, high)
        return high

    main = steps_needed(fit.params, fit.decay)
    draws = [s for s in (steps_needed(p, d) for p, d in fit.draws()[:10]) if s is not None]
    warnings = []
    if main is not None:
        epoch = _epoch_steps(run)
        if epoch is not None and main > epoch:
            warnings.append(f"past one epoch of its data ({int(epoch):,} steps): repeated data, and the law assumes "
                            "fresh data")
        if main > FAR_BEYOND * max(fit.steps):
            warnings.append(f"{main / max(fit.steps):.3g}x past the last fitted step: extrapolation")
        schedule = fresh_schedule(run, main)
        decrease = Plan(np.array([]), schedule, main).areas(fit.decay)[2]
        if not fit.identified and decrease > fit.fitted_decrease + MIN_DECAY / 2:
            warnings.append("the schedule decays where the fitted history did not: C is not identified")
    return {"target": target, "steps": main, "tokens": main * tokens_per_step if main else None,
            "low_tokens": min(draws) * tokens_per_step if draws else None,
            "high_tokens": max(draws) * tokens_per_step if draws else None,
            "reached_in_bootstrap": f"{len(draws)} of {min(10, len(fit.bootstrap))}",
            "trusted": main is not None and not warnings and fit.trusted, "warnings": warnings,
            "what": "a fresh run of the run's schedule shape, stretched to the length that reaches the target"}


def describe_forecast(name: str, result: Forecast) -> str:
    """The forecast as text (scripts/forecast.py): the fit, each row with its interval and trust, the refused rows,
    the target, and the advice."""
    fit = result.fit
    branches = f" and {sum(len(b['steps']) for b in fit['branch_points'])} of its cool-down branches'" \
        if fit["branch_points"] else ""
    l0, _, alpha, c = fit["params"]
    what = fit["source"] if fit["source"].startswith("validation loss (") else \
        f"{len(fit['steps'])} points of its {fit['source']}"
    lines = [f"{name}: fitted on {what}{branches} up to step {max(fit['steps'])} of the {result.last_step} it "
             f"logged (log residual rms {fit['residual_rms']:.4f}, noise of a point {fit['noise']:.4f}; L0 {l0:.3f}, "
             f"alpha {alpha:.3f}, C {c:.3g}{'' if fit['identified'] else ' (not identified: 0)'})"]
    lines += [f"  note: {note}" for note in fit["notes"]] + [f"  {result.interval}"]
    for row in [result.current_schedule, *result.horizons]:
        lines.append(f"  {row['what']}:\n    loss {row['loss']:.4f} ({row['low']:.4f}-{row['high']:.4f}) at step "
                     f"{row['steps']:,} ({row['tokens']:,.0f} tokens)" + ("" if row["trusted"] else ", not trusted"))
        lines += [f"    not to be trusted: {warning}" for warning in row["warnings"]]
    lines += [f"  {row['what']}: refused: {row['refused']}" for row in result.refused]
    if result.target:
        lines.append(_target_line(result.target, fit))
    lines += [f"  the fit is not to be trusted: {warning}" for warning in fit["warnings"]]
    if result.advice:
        lines.append(f"  {result.advice}")
    lines.append(f"  trusted: {'yes' if result.trusted else 'no'} (the first forecast above: the headline)")
    return "\n".join(lines)


def _target_line(target: dict, fit: dict) -> str:
    if not target["tokens"]:
        return (f"  {target['target']:.4f} is not reached by a fresh run of its schedule shape of any length the "
                "law can tell")
    interval = f" ({target['low_tokens']:,.0f}-{target['high_tokens']:,.0f})" if target["low_tokens"] else ""
    trust = "" if target["trusted"] else ", not trusted: " + "; ".join(target["warnings"] or fit["warnings"])
    return (f"  tokens for a fresh run of its schedule shape to reach {target['target']:.4f}: "
            f"{target['tokens']:,.0f}{interval}, {target['steps']:,} steps{trust}")


def forecast_json(result: Forecast) -> dict:
    """What ``scripts/forecast.py --json`` prints: the headline (final_val_loss and its interval) and every row."""
    own = result.current_schedule
    return {"final_val_loss": own["loss"], "final_val_loss_interval": [own["low"], own["high"]],
            "what": own["what"], "kind": own["kind"], "steps": own["steps"], "tokens": own["tokens"],
            "trusted": result.trusted, "warnings": result.warnings, "fitted_on": result.fit["source"],
            "identified": result.fit["identified"], "interval": result.interval,
            "horizons": result.horizons, "refused": result.refused, "advice": result.advice,
            "target": result.target}
