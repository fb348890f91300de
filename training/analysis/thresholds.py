"""Every threshold the analysis uses, in the units of the logged numbers, and the words built from them.

A report sentence that compares a number with a limit gets its words from the functions here, so the words can
never disagree with the number (tests check every planted run's report for that).
"""

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
# A divergence is "late" when the loss had been stable (no jump, falling) for this many steps after the early phase
# before it started to climb: the peak learning rate held for a long time, so the cause came later (a data
# stretch, a learning rate too high for the sharper loss surface late in training), not the warmup.
LATE_DIVERGENCE_STABLE_STEPS = 100
OVERFIT_VAL_RISE = 0.05  # nats validation loss rises from its minimum ...
OVERFIT_TRAIN_FALL = -0.05  # ... while the smoothed train loss keeps falling by this much
GAP_TREND = 0.05  # nats the train/validation gap must change (mid-run -> end) to be called widening / narrowing
REFERENCE_TOLERANCE = 5e-5  # nats: a curve within this of the reference has reached it (measurement agreement)
LOSS_FLAT = 0.5  # nats of train-loss drop below which a run of >= LOSS_FLAT_MIN_STEPS steps "barely moves"
LOSS_FLAT_MIN_STEPS = 50
OVERFIT_VAL_RISE_RELATIVE = 0.02  # ... or this fraction of the best validation loss, whichever is larger
MIN_EVALUATIONS = 2  # validation evaluations needed to speak of a trend
EMA_ALPHA = 0.1  # smoothing of per-step curves (the report's "smoothed train loss")

# ----------------------------------------------------------------------------------------------- spikes
SPIKE_Z = 5.0  # z-score of a loss or gradient norm against its trailing window (llm.c's outlier rule)
SPIKE_WINDOW = 50
SPIKE_MIN_HISTORY = 8  # finite values of history before a z-score means anything
# The spike_detector callback uses the same three numbers by default, so the report's count does not depend on
# whether it ran (the report always counts from the logged loss).
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
RATIO_TARGET = 1e-3  # usual healthy per-step update/weight ratio under AdamW (an order of magnitude)
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
    """Where an update/weight ratio sits relative to the 1e-3 target, in words."""
    if value == 0:
        return "zero: the matrix does not move"
    if value < FAR_BELOW:
        return f"more than a decade below 1e-3 ({value / RATIO_TARGET:.2g}x the target)"
    if value > FAR_ABOVE:
        return f"more than a decade above 1e-3 ({value / RATIO_TARGET:.2g}x the target)"
    return f"within a decade of 1e-3 ({value / RATIO_TARGET:.2g}x the target)"


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
