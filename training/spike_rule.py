"""What a spike is, for every part that judges one online (the spike_detector callback, the spike guard) and the
report's thresholds: an outlier against the run's own batch-to-batch noise, not against a fixed number.

``Band`` follows one signal (the loss, or the logarithm of the gradient norm): its centre is the median of the last
``RECENT`` accepted values, its noise the robust spread (1.4826 x MAD) of how far each accepted value stood from the
median of the ones before it, and its drift the median of those residuals (negative while the loss falls, so a
step is measured from where the trend would put it, and a step that merely fails to fall is no rise). A value is a
spike when it stands more than ``SPIKE_Z`` of those deviations above where the band expects it AND at least a
minimum size above the centre (``LOSS_SPIKE_MIN_RELATIVE`` of the loss; twice the gradient norm): in a very quiet
stretch a tiny wobble is many deviations but no spike.

The report's offline rule (``analysis/summaries.robust_outliers``) sees both sides of a step; this one only the
past, so right after a level shift it may flag a step the report does not. A leaf module (imports nothing of the
project).
"""

import math
from collections import deque

import numpy as np

SPIKE_Z = 5.0
LOSS_SPIKE_MIN_RELATIVE = 0.05  # a loss spike stands at least 5% above its level (0.17 nats at a loss of 3.3)
GRAD_SPIKE_MIN_RELATIVE = 1.0  # a gradient-norm spike is at least twice its level
MIN_BAND = 8  # residuals before a robust spread (and so a z-score) means anything
RECENT = 10  # accepted values whose median is the band's centre
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x 1.4826 = its standard deviation


class Band:
    """A signal's recent level, drift and batch-to-batch noise (see the module docstring)."""

    def __init__(self, window: int):
        self.window = window
        self.values: deque = deque(maxlen=RECENT)
        self.residuals: deque = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self.residuals)

    @property
    def centre(self) -> float:
        return float(np.median(self.values)) if self.values else math.nan

    def z(self, value: float) -> float:
        """How many robust standard deviations ``value`` stands above where the band expects it (its centre moved by
        the median drift); 0 while the band is too new."""
        if len(self.residuals) < MIN_BAND:
            return 0.0
        residuals = np.asarray(self.residuals, dtype=float)
        drift = float(np.median(residuals))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(residuals - drift)))
        return (value - self.centre - drift) / sigma if sigma > 0 else 0.0

    def accept(self, value: float) -> None:
        if len(self.values) >= 3:
            self.residuals.append(value - self.centre)
        self.values.append(value)

    def state_dict(self) -> dict:
        return {"values": list(self.values), "residuals": list(self.residuals)}

    def load_state_dict(self, state: dict) -> None:
        self.values = deque(state["values"], maxlen=RECENT)
        self.residuals = deque(state["residuals"], maxlen=self.window)


def loss_spike(band: Band, loss: float, z_threshold: float = SPIKE_Z) -> tuple[bool, float]:
    """(is it a spike, its z) for a loss against its band."""
    z = band.z(loss)
    return z > z_threshold and loss >= (1 + LOSS_SPIKE_MIN_RELATIVE) * band.centre, z


def grad_norm_spike(band: Band, log_norm: float, z_threshold: float = SPIKE_Z) -> tuple[bool, float]:
    """(is it a spike, its z) for the logarithm of a gradient norm against its band (of logarithms)."""
    z = band.z(log_norm)
    return z > z_threshold and log_norm >= band.centre + math.log1p(GRAD_SPIKE_MIN_RELATIVE), z
