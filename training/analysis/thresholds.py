"""Every threshold the analysis uses, in the units of the logged numbers, and the words built from them.

A report sentence that compares a number with a limit gets its words from the functions here, so the words can
never disagree with the number (tests check every planted run's report for that).
"""

# ----------------------------------------------------------------------------------------------- run length
MIN_STEPS_TO_JUDGE = 20  # fewer optimizer steps: trends, warmup and clipping statistics mean nothing yet

# ----------------------------------------------------------------------------------------------- loss
INIT_TOLERANCE = 0.15  # nats around ln(vocab) that count as "uniform at init"
DIVERGENCE_RISE = 0.5  # nats the smoothed train loss climbs back above its minimum
OVERFIT_VAL_RISE = 0.05  # nats validation loss rises from its minimum ...
OVERFIT_TRAIN_FALL = -0.05  # ... while the smoothed train loss keeps falling by this much
GAP_TREND = 0.05  # nats the train/validation gap must change (mid-run -> end) to be called widening / narrowing
REFERENCE_TOLERANCE = 5e-5  # nats: a curve within this of the reference has reached it (measurement agreement)
LOSS_FLAT = 0.5  # nats of train-loss drop below which a run of >= 50 steps "barely moves"

# ----------------------------------------------------------------------------------------------- spikes
SPIKE_Z = 5.0  # z-score of a loss or gradient norm against its trailing window (llm.c's outlier rule)
SPIKE_WINDOW = 50
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
DECAY_DOMINANT = 0.5  # share of a matrix's update that is weight decay above which decay, not learning, dominates
WEIGHT_SHRINK = 0.15  # relative fall of the median weight RMS over the run that counts as weights shrinking

# ----------------------------------------------------------------------------------------------- depth
MIN_BLOCKS_FOR_DEPTH = 3  # with fewer blocks a trend with depth cannot be told from two matrices differing
DEPTH_TREND = 1.0  # decades the fitted learning ratio changes from the first to the last block: depth starves layers
DEPTH_FLAT = 0.3  # decades (2x) below which learning does not depend on depth

# ----------------------------------------------------------------------------------------------- gradient norm
SEED_IDEAL_GRAD_NORM = 0.3  # the seed write-up's "ideal range 0.3-0.7" lower end
CLIPPING_DOMINANT = 0.5  # fraction of post-warmup steps clipped above which the threshold, not outliers, clips


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
