"""Numbers in words: the formatting every report sentence and table uses."""


def fmt(value, digits=4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and (abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3)):
        return f"{value:.2e}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def listed(names: list[str], values: dict | None = None, limit: int = 10) -> str:
    items = [f"{n} ({fmt(values[n])})" if values else n for n in names[:limit]]
    return ", ".join(items) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def count(value) -> str:
    """A count of tokens or steps: 589,824 (not 5.9e+05)."""
    return "n/a" if value is None else f"{value:,.0f}"
