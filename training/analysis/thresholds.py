"""Every threshold the analysis uses, in the units of the logged numbers, and the words built from them.

A report sentence that compares a number with a limit gets its words from the functions here, so the words can
never disagree with the number (tests check every planted run's report for that).
"""

# What a spike is (its z threshold and minimum sizes) is shared with the loop's online detectors.
from ..spike_rule import GRAD_SPIKE_MIN_RELATIVE, LOSS_SPIKE_MIN_RELATIVE, SPIKE_Z  # noqa: F401  (re-exported)

# ----------------------------------------------------------------------------------------------- run length
MIN_STEPS_TO_JUDGE = 20  # fewer optimizer steps: trends, warmup and clipping statistics mean nothing yet

# ----------------------------------------------------------------------------------------------- loss
# The expected initial loss: ln(vocab) plus what the random logits add. With a LayerNorm before the (tied) output
# matrix, each logit is a sum of n_embd products of unit-variance activations with N(0, init_std^2) weights, so the
# logits have variance n_embd * init_std^2 and E[log-sum-exp] exceeds ln(vocab) by about half of it (lognormal mean):
# 0.154 nats for GPT-2 124M (768 x 0.02^2 / 2). INIT_TOLERANCE is the band around that expectation.
INIT_TOLERANCE = 0.15  # nats around the expected initial loss that count as "as expected at init"
STANDARD_INIT_STD = 0.02  # GPT-2's: an init whose expected start exceeds this one's by INIT_TOLERANCE is too large
DIVERGENCE_RISE = 0.5  # nats the smoothed train loss climbs back above its minimum
VAL_AGREES_RISE = DIVERGENCE_RISE / 5  # ... with validation rising at least this much (else: a noisy data stretch)
# Did the run hold its peak learning rate stably before trouble began? It reached HELD_PEAK_FRACTION of its peak
# rate and then trained at that rate, without a spike, a jump or a non-finite loss, while the smoothed train loss
# reached new lows, for at least HELD_PEAK_MIN_STEPS steps: twice the smoothed curve's own horizon (1 / EMA_ALPHA
# steps), the shortest stretch over which the smoothed loss can show that it fell at that rate. Not a fixed length
# of "stable training": a 40-step run that held its peak for 30 steps and then diverged held it as surely as a long
# run did, and neither divergence is the warmup's doing (the peak rate was sustained; the cause came later).
HELD_PEAK_FRACTION = 0.8
OVERFIT_VAL_RISE = 0.05  # nats validation loss rises from its minimum ...
OVERFIT_TRAIN_FALL = -0.05  # ... while the smoothed train loss keeps falling by this much
GAP_TREND = 0.05  # nats the train/validation gap must change (mid-run -> end) to be called widening / narrowing
REFERENCE_TOLERANCE = 5e-5  # nats: a curve within this of the reference has reached it (measurement agreement)
# "Not learning" (the seed's "high train + high validation loss"): after LOSS_FLAT_MIN_STEPS steps or more, the train
# loss fell from its start (the median of its first 5 steps) by less than LOSS_FLAT nats or LOSS_FLAT_NOISE times its
# batch-to-batch noise, whichever is larger, and validation (a fixed set: no sampling noise) by less than LOSS_FLAT.
# A drop of a few tenths of a nat in a 60-step run of a tiny model is slow learning, not none.
LOSS_FLAT = 0.05
LOSS_FLAT_NOISE = 3.0
LOSS_FLAT_MIN_STEPS = 50
OVERFIT_VAL_RISE_RELATIVE = 0.02  # ... or this fraction of the best validation loss, whichever is larger
MIN_EVALUATIONS = 2  # validation evaluations needed to speak of a trend
EMA_ALPHA = 0.1  # smoothing of per-step curves (the report's "smoothed train loss")
HELD_PEAK_MIN_STEPS = 2 * round(1 / EMA_ALPHA)  # see HELD_PEAK_FRACTION
# The learning regime (the seed's table): a curve "falls" over the later half of the run when it drops by more than
# TREND_NOISE times its per-step batch-to-batch noise (about 3 standard deviations of the difference of two values
# of the smoothed curve) and at least TREND_MIN_NATS, "rises" when it climbs as much, else it is "flat".
TREND_NOISE = 1.0
TREND_MIN_NATS = 0.02
MIN_EVALUATIONS_FOR_TREND = 3  # validation points needed to call validation falling, flat or rising

# ----------------------------------------------------------------------------------------------- spikes
# A spike is an outlier against the run's own batch-to-batch noise, never against a trend:
# - the level at a step is the larger of the medians of its SPIKE_NEIGHBOURS previous and next steps (a falling
#   loss does not make the next step look high; a rising one does not make the previous one look high);
# - the noise is the robust spread (1.4826 x MAD) of the detrended residuals (each step minus the median of its
#   neighbours on both sides) within SPIKE_NOISE_WINDOW / 2 steps on each side of it, the larger of the two sides:
#   local, so the fast early descent and its large residuals neither inflate the noise of later stretches nor are
#   judged against a quiet later stretch, and robust, so one spike does not widen the band it is judged against;
# - a step is a spike when it stands more than SPIKE_Z of those robust standard deviations above its level AND at
#   least the minimum relative size above it (LOSS_SPIKE_MIN_RELATIVE of the loss; the gradient norm at least
#   doubles: it is judged on a log scale, where its batch-to-batch noise is multiplicative).
# The spike guard (training/guards/spike_guard.py) uses the same robust family online (median centre, MAD of residuals,
# log gradient norm, its own z); the spike_detector callback still uses llm.c's mean/std over a trailing window,
# which a falling trend and the spikes themselves inflate: the report lists its flags separately.
SPIKE_NEIGHBOURS = 5
SPIKE_NOISE_WINDOW = 50
SPIKE_MIN_RESIDUALS = 8  # residuals in the noise window before a step can be judged
SPIKE_WINDOW = 50  # the spike_detector callback's trailing window (its own rule, see above)
SPIKE_MIN_HISTORY = 8
SPIKES_FOR_INSTABILITY = 2
# A loss jump: a step whose loss exceeds the median of both its previous and its next JUMP_NEIGHBOURS steps (which
# removes the trend of a falling loss) by max(JUMP_MIN_NATS, JUMP_NOISE_FACTOR x the run's batch-to-batch noise),
# with a gradient norm JUMP_GRAD_FACTOR x the run's median or more at that step: the weights were pushed somewhere
# worse. A hard batch raises the loss but leaves the gradient norm ordinary, so it is not counted.
JUMP_NEIGHBOURS = 5
JUMP_MIN_NATS = 1.0
JUMP_NOISE_FACTOR = 5.0
JUMP_GRAD_FACTOR = 5.0
# Warmup (not the peak lr) is blamed only if, after the early phase, the run trained without jumps at this fraction
# of its peak learning rate or more: otherwise the decaying schedule, not the end of the early phase, calmed it.
WARMUP_LATER_LR = 0.8

# ----------------------------------------------------------------------------------------------- acting on a run
# Steps after a setting changed by hand (a resume with another --max_lr...) whose loss jumps and spikes are the
# change's doing, not the run's: they are not counted as the run's instability.
CHANGE_SETTLE_STEPS = 10

# ----------------------------------------------------------------------------------------------- update ratios
# What a run's own settings imply. Under Adam every element moves by lr x m/sqrt(v) per step, and |m/sqrt(v)| is
# at most (1 - b1) / sqrt((1 - b2)(1 - b1^2/b2)) (Cauchy-Schwarz over the moments' sums; 1.17 for b1 0.9, b2 0.95;
# exactly 1 at the first step), so the update/weight RMS ratio of a matrix is lr_t x e / rms(w) with e, the
# consistency of the gradient's sign across steps, between about sqrt((1 - b1)/(1 + b1)) (pure noise: 0.23 for
# b1 0.9) and 1 (every step agrees). Muon (torch.optim.Muon, adjust_lr_fn="match_rms_adamw") orthogonalises the
# momentum (singular values ~0.5-1.2, so RMS ~1/sqrt(max(m, n))) and scales by 0.2 x lr x sqrt(max(m, n)): its update
# RMS is about 0.2 x lr whatever the gradient's consistency, so its expected ratio is 0.2 x lr_t / rms(w).
MUON_RMS_SCALE = 0.2
MUON_CONSISTENCY_BAND = (0.3, 1.5)  # measured / (0.2 x lr / rms(w)) of a Muon matrix whose gradient has full rank
BARELY_MOVES = 0.1  # a matrix moving less than this fraction of its band's lower edge barely learns
OUTPACES = 1.5  # a matrix moving more than this factor above its band's upper edge moves faster than its lr allows
MOVE_TOO_SMALL = 0.1  # the whole run's learning rates let the weights move less than 10% of their size: too low
LR_LIMITED = 0.7  # median Adam consistency at or above which successive steps agree: the step size is the limit
RATIO_TARGET = 1e-3  # the seed's heuristic per-step update/weight ratio (GPT-2-size weights at lr ~6e-4): context
FAR_BELOW = RATIO_TARGET / 10  # a decade below: the matrix barely moves
FAR_ABOVE = RATIO_TARGET * 10  # a decade above: the matrix moves a percent per step
RATIO_UNSTABLE = 3 * FAR_ABOVE  # a median this high moves weights several percent per step
# Weight decay's step against the gradient-driven step of the same matrix (lr*wd / the gradient-driven update
# ratio, both logged): at 0.6 and more the decay pulls the weights in by more than half as much as learning moves
# them, and with shrinking weights it sets their size.
DECAY_VS_GRADIENT = 0.6
WEIGHT_SHRINK = 0.15  # relative fall of the median weight RMS over the run that counts as weights shrinking
RATIO_SKIP_FRACTION = 0.1  # per-matrix medians leave out the first 10% of the run (the early phase)
LR_RAISE_RANGE = (3.0, 100.0)  # the factor a too-low learning rate is told to rise by, at least and at most
SLOW_BLOCK_FACTOR = 10.0  # a block this many times slower than the fastest one is starved

# ----------------------------------------------------------------------------------------------- depth
MIN_BLOCKS_FOR_DEPTH = 3  # with fewer blocks a trend with depth cannot be told from two matrices differing
DEPTH_TREND = 1.0  # decades the fitted learning ratio changes from the first to the last block: depth starves layers
DEPTH_FLAT = 0.3  # decades (2x) below which learning does not depend on depth

# ----------------------------------------------------------------------------------------------- gradient norm
SEED_IDEAL_GRAD_NORM = 0.3  # the seed write-up's "ideal range 0.3-0.7" lower end
CLIPPING_DOMINANT = 0.5  # fraction of post-warmup steps clipped above which the threshold, not outliers, clips
CLIP_MIN_STEPS = MIN_STEPS_TO_JUDGE // 2  # steps after warmup needed to judge the clip threshold
EARLY_FRACTION = 20  # the gradient norm's initial peak is looked for in the first 1/20 of the steps


def ratio_band(value: float) -> str:
    """Where an update/weight ratio sits relative to the seed's 1e-3 heuristic, in words (context: the run's own
    expectation is lr/rms(w), see ``adam_band``)."""
    if value == 0:
        return "zero: the matrix does not move"
    if value < FAR_BELOW:
        return f"more than a decade below 1e-3 ({value / RATIO_TARGET:.2g}x the 1e-3 heuristic)"
    if value > FAR_ABOVE:
        return f"more than a decade above 1e-3 ({value / RATIO_TARGET:.2g}x the 1e-3 heuristic)"
    return f"within a decade of 1e-3 ({value / RATIO_TARGET:.2g}x the 1e-3 heuristic)"


def trend_limit(noise: float = 0.0) -> float:
    """The change of a loss curve with per-step noise ``noise`` that counts as a trend (see TREND_NOISE)."""
    return max(TREND_MIN_NATS, TREND_NOISE * noise)


def adam_band(beta1: float = 0.9, beta2: float = 0.95) -> tuple[float, float]:
    """The range of Adam's consistency e = |update RMS| / lr: from pure noise to every step agreeing, capped by the
    bound on |m/sqrt(v)| (see MUON_RMS_SCALE's comment)."""
    noise = (max(1e-12, (1 - beta1) / (1 + beta1))) ** 0.5
    if beta1 ** 2 >= beta2:
        return noise, float("inf")
    return noise, max(1.0, (1 - beta1) / ((1 - beta2) * (1 - beta1 ** 2 / beta2)) ** 0.5)


def in_healthy_band(value: float) -> bool:
    return FAR_BELOW <= value <= FAR_ABOVE


def gap_trend(change: float) -> str:
    """The train/validation gap's change from mid-run to the end, in words."""
    if change > GAP_TREND:
        return "widens"
    if change < -GAP_TREND:
        return "narrows"
    return "stays stable"

# ----------------------------------------------------------------------------------------------- batch size
# McCandlish et al. 2018: steps S = S_min (1 + B_noise / B) and tokens E = E_min (1 + B / B_noise). A batch 3x below
# the noise scale needs 4x the minimum steps (1.33x the tokens); 3x above, 4x the minimum tokens (1.33x the steps).
NOISE_BATCH_FAR = 3.0
