"""The report's ids in one place: each finding's id and each verdict's id. Both are string enums, so they are written
to report.json (and read back, and compared with) as the plain strings they always were; a new finding adds its id
here (docs/development.md, "Adding a finding")."""

from enum import Enum


class StrId(str, Enum):
    """An id that is its string: equal to it, hashed like it, and printed as it (``enum.StrEnum`` is Python 3.11+;
    this project supports 3.10)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class FindingId(StrId):
    """The id of every finding the report's rules (report.py ``RULES``) can give."""

    INIT_OVERCONFIDENT = "init_overconfident"
    INIT_UNIFORM = "init_uniform"
    INIT_BELOW_UNIFORM = "init_below_uniform"
    BRANCHED_FROM = "branched_from"
    SETTINGS_CHANGED = "settings_changed"
    SPIKE_GUARD = "spike_guard"
    TOO_SHORT = "too_short"
    WARMUP_TOO_SHORT = "warmup_too_short"
    LATE_DIVERGENCE = "late_divergence"
    LR_TOO_HIGH = "lr_too_high"
    LR_TOO_LOW = "lr_too_low"
    NOT_LEARNING = "not_learning"
    LOSS_FLAT = "loss_flat"
    WEIGHT_DECAY_TOO_HIGH = "weight_decay_too_high"
    OVERFITTING = "overfitting"
    VAL_NOT_FOLLOWING = "val_not_following"
    UNDERFITTING = "underfitting"
    PLATEAU = "plateau"
    LEARNING = "learning"
    DEPTH_STARVES_LAYERS = "depth_starves_layers"
    LEARNING_BY_DEPTH = "learning_by_depth"
    MATRICES_FROZEN = "matrices_frozen"
    LAYERS_NOT_LEARNING = "layers_not_learning"
    LAYERS_OUTPACE_LR = "layers_outpace_lr"
    UPDATE_RATIOS = "update_ratios"
    LR_LIMITED = "lr_limited"
    CLIP_THRESHOLD_LOW = "clip_threshold_low"
    GRAD_NORM_SPIKES = "grad_norm_spikes"
    TRAIN_VAL_GAP = "train_val_gap"
    REFERENCE_REACHED = "reference_reached"
    REFERENCE_NOT_REACHED = "reference_not_reached"
    NOISE_SCALE_UNDEFINED = "noise_scale_undefined"
    BATCH_ABOVE_NOISE_SCALE = "batch_above_noise_scale"
    BATCH_BELOW_NOISE_SCALE = "batch_below_noise_scale"
    BATCH_NEAR_NOISE_SCALE = "batch_near_noise_scale"
    GRAD_NORM_REGIME = "grad_norm_regime"
    SMALL_RAW_GRADIENTS_NOT_VANISHING = "small_raw_gradients_not_vanishing"
    LOSS_SPIKES = "loss_spikes"
    HEALTHY = "healthy"


class VerdictId(StrId):
    """The verdict's id (report.py ``verdict``): one word for the run's state, read by sweeps and the rendering."""

    TOO_SHORT = "too_short"
    DIVERGED = "diverged"
    STOPPED = "stopped"
    UNSTABLE = "unstable"
    UNSTABLE_EARLY = "unstable_early"
    NOT_LEARNING = "not_learning"
    MEMORISING = "memorising"
    WARNINGS = "warnings"
    HEALTHY = "healthy"
