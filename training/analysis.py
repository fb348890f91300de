"""Reading a run's TensorBoard logs back (and, built on that, the run report and plots)."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator


def event_files(run_dir: str | Path) -> list[Path]:
    """Every TensorBoard event file under ``run_dir``, oldest first (by the wall time of its first event)."""
    files = [p for p in Path(run_dir).rglob("events.out.tfevents.*") if p.is_file()]
    return sorted(files, key=lambda p: (_first_wall_time(p), p.name))


def _first_wall_time(path: Path) -> float:
    try:
        name_time = float(path.name.split(".")[3])
    except (IndexError, ValueError):
        name_time = path.stat().st_mtime
    return name_time


def read_run_scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over all event files; a step written twice (a resumed run re-doing steps after its
    last checkpoint) keeps the value written last."""
    scalars: dict[str, dict[int, float]] = {}
    for path in event_files(run_dir):
        accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0}, purge_orphaned_data=False)
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            series = scalars.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                series[event.step] = event.value
    return {tag: dict(sorted(series.items())) for tag, series in scalars.items()}


def read_run_texts(run_dir: str | Path) -> dict[str, dict[int, str]]:
    """Text summaries (samples, config): tag -> {step: text}."""
    texts: dict[str, dict[int, str]] = {}
    for path in event_files(run_dir):
        accumulator = EventAccumulator(str(path), size_guidance={TENSORS: 0}, purge_orphaned_data=False)
        accumulator.Reload()
        for tag in accumulator.Tags().get("tensors", []):
            for event in accumulator.Tensors(tag):
                values = event.tensor_proto.string_val
                if values:
                    texts.setdefault(tag.replace("/text_summary", ""), {})[event.step] = values[0].decode()
    return texts
