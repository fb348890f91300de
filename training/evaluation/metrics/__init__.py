"""Local ``evaluate`` metric modules, loaded by path so nothing is fetched from the Hub at run time."""

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent


def load_metric(name: str):
    import evaluate

    return evaluate.load(str(METRICS_DIR / name))
