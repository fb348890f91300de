"""The one cadence rule every component uses for "every N steps" (a leaf module)."""


def is_due(step: int, every: int, first: bool = False, last: bool = False) -> bool:
    """``step`` (1-based) is a multiple of ``every`` (0 disables); with ``first`` step 1 is always due (diagnostics
    want the very first step), with ``last`` the run's last step is (what is measured every N steps is also
    measured at the end)."""
    return every > 0 and (step % every == 0 or (first and step == 1) or last)
