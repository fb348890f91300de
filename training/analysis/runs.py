"""Reading a run back: its TensorBoard scalars and texts, its configuration, its measured reference, its data size."""

import json
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog

from ..config_fields import flatten
from ..errors import UserError
from ..layout import RunLayout, Tags, run_of_checkpoint, shared_history_step


def event_files(run_dir: str | Path) -> list[Path]:
    """The TensorBoard event files of a run (in the run folder, and in the tensorboard/ subfolder of runs written by
    earlier versions), oldest first (by the wall time in the file name)."""
    files = RunLayout(run_dir).event_files()
    return sorted(files, key=lambda p: (_first_wall_time(p), p.name))


def _first_wall_time(path: Path) -> float:
    try:
        name_time = float(path.name.split(".")[3])
    except (IndexError, ValueError):
        name_time = path.stat().st_mtime
    return name_time


def purge_step(path: Path) -> int | None:
    """The step from which a writer asked readers to drop earlier writers' events (``SummaryWriter(purge_step=)``,
    written by a resumed run): a session-start event before any summary."""
    for event in EventFileLoader(str(path)).Load():
        if event.HasField("summary"):
            return None
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            return event.step
    return None


def truncated_at(path: Path) -> int | None:
    """The byte offset of an incomplete last record (a file cut short by a crash or a full disk), else None.
    TFRecord framing: an 8-byte length, a 4-byte CRC, the payload, a 4-byte CRC."""
    size, position = path.stat().st_size, 0
    with open(path, "rb") as handle:
        while position < size:
            handle.seek(position)
            header = handle.read(12)
            if len(header) < 12:
                return position
            end = position + 12 + struct.unpack("<Q", header[:8])[0] + 4
            if end > size:
                return position
            position = end
    return None


def _read_series(run_dir, read_file) -> dict:
    """tag -> {step: value} over a run's event files in order: a later file's purge step drops the steps at and
    after it that earlier files of the same folder wrote, and a step written again keeps the value written last."""
    merged: dict[str, dict[int, tuple]] = {}  # tag -> step -> (value, folder)
    for path in event_files(run_dir):
        if (offset := truncated_at(path)) is not None:
            warnings.warn(f"{path} is truncated (or still being written) at byte {offset}: the events before it are "
                          "used.", stacklevel=2)
        # One run, one history: a resumed run's purge step applies to every earlier file of the run (an old run's
        # tensorboard/ subfolder included).
        folder, purge = Path(run_dir), purge_step(path)
        if purge is not None:
            for series in merged.values():
                for step in [s for s, (_, where) in series.items() if s >= purge and where == folder]:
                    del series[step]
        for tag, step, value in read_file(path):
            merged.setdefault(tag, {})[step] = (value, folder)
    return {tag: {step: value for step, (value, _) in sorted(series.items())} for tag, series in merged.items()
            if series}


def _file_scalars(path: Path):
    accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0}, purge_orphaned_data=False)
    accumulator.Reload()
    for tag in accumulator.Tags().get("scalars", []):
        for event in accumulator.Scalars(tag):
            yield tag, event.step, event.value


def _file_texts(path: Path):
    accumulator = EventAccumulator(str(path), size_guidance={TENSORS: 0}, purge_orphaned_data=False)
    accumulator.Reload()
    try:
        text_tags = set(accumulator.PluginTagToContent("text"))  # not the custom-scalars layout's tensor
    except KeyError:
        return
    for tag in accumulator.Tags().get("tensors", []):
        if tag not in text_tags:
            continue
        for event in accumulator.Tensors(tag):
            values = event.tensor_proto.string_val
            if values:
                yield tag.replace("/text_summary", ""), event.step, values[0].decode()


def read_run_scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over all event files of the run, as TensorBoard shows them (see ``_read_series``)."""
    return _read_series(run_dir, _file_scalars)


def read_run_texts(run_dir: str | Path) -> dict[str, dict[int, str]]:
    """Text summaries (samples, config): tag -> {step: text}."""
    return _read_series(run_dir, _file_texts)


# ----------------------------------------------------------------------------------------------- run data
@dataclass
class Run:
    """One run's logs and facts, as the analysis needs them."""

    name: str
    run_dir: Path
    scalars: dict[str, dict[int, float]]
    config: dict = field(default_factory=dict)
    reference_loss: float | None = None
    reference_source: str | None = None
    dataset_tokens: int | None = None
    changes: list[dict] = field(default_factory=list)  # settings changed by hand on resume (changes.jsonl)
    interventions: list[dict] = field(default_factory=list)  # what the spike guard did (interventions.jsonl)
    branch: dict | None = None  # where a branched run (a cool-down) came from (branch.json)

    @property
    def settings(self) -> dict:
        """The run's settings by name (its saved configuration, of any version's sections)."""
        return flatten(self.config)

    def series(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        data = self.scalars.get(tag, {})
        return np.array(list(data.keys()), dtype=float), np.array(list(data.values()), dtype=float)

    def has(self, tag: str) -> bool:
        return bool(self.scalars.get(tag))

    def first(self, tag: str, default=None):
        data = self.scalars.get(tag)
        return next(iter(data.values())) if data else default

    @property
    def tokens_per_step(self) -> float | None:
        value = self.first(Tags.RUN_TOKENS_PER_STEP)
        if value is None and self.has(Tags.TRAIN_TOKENS_SEEN):
            steps, tokens = self.series(Tags.TRAIN_TOKENS_SEEN)
            value = tokens[0] / steps[0]
        return value

    @property
    def vocab_size(self) -> int:
        value = self.first(Tags.RUN_VOCAB_SIZE) or self.settings.get("vocab_size") or 50304
        return int(value)

    @property
    def grad_clip(self) -> float | None:
        value = self.first(Tags.RUN_GRAD_CLIP)
        if value is None:
            value = self.settings.get("grad_clip")
        return value

    def tags(self, prefix: str) -> list[str]:
        return sorted(t for t in self.scalars if t.startswith(prefix))


def load_run(run_dir: str | Path, reference_loss: float | None = None, reference_eval: str | Path | None = None,
             dataset_tokens: int | None = None) -> Run:
    """Scalars, resolved config, the reference loss (given > --reference_eval JSON > the run's own
    reference_eval.json > its reference/val_loss tag) and the dataset size (meta.json of the run's data)."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {run_dir} does not exist.")
    if not event_files(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no TensorBoard event files (events.out.tfevents.*): not a run folder "
                                "of this project, or the run stopped before it logged anything.")
    scalars = read_run_scalars(run_dir)
    branch = _read_json(layout.branch_file)
    if branch:
        scalars = with_parent_history(scalars, branch)
    if not scalars.get(Tags.TRAIN_LOSS):
        raise RunReadError(f"{run_dir}: its event files ({', '.join(p.name for p in event_files(run_dir)[:3])}) hold "
                           "no training loss: the run stopped before its first logged step, or the files are empty "
                           "or damaged. Nothing to analyse.")
    config = yaml.safe_load(layout.config_file.read_text()) if layout.config_file.exists() else {}
    run = Run(name=run_dir.name, run_dir=run_dir, scalars=scalars, config=config, dataset_tokens=dataset_tokens,
              changes=parent_records(branch, "changes_file") + read_jsonl(layout.changes_file),
              interventions=parent_records(branch, "interventions_file") + read_jsonl(layout.interventions_file),
              branch=branch)
    if reference_loss is not None:
        run.reference_loss, run.reference_source = reference_loss, "given (--reference_loss)"
    elif reference_eval is not None or layout.reference_eval_file.exists():
        path = Path(reference_eval or layout.reference_eval_file)
        reference = read_reference_eval(path)
        run.reference_loss = reference["val_loss"]
        run.reference_source = f"measured: {reference.get('name', 'reference')} ({path})"
    elif run.has(Tags.REFERENCE_VAL_LOSS):
        run.reference_loss, run.reference_source = run.first(Tags.REFERENCE_VAL_LOSS), "measured (TensorBoard)"
    if run.dataset_tokens is None:
        run.dataset_tokens = _dataset_tokens(config)
    return run


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunReadError(f"{path} is not valid JSON ({error}).") from error


def read_jsonl(path: Path) -> list[dict]:
    """A record file of the run (one JSON object per line); a line cut short by a crash is left out."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def with_parent_history(scalars: dict, branch: dict, depth: int = 0) -> dict:
    """A branch's scalars preceded by its parent's up to the branch point, so its curves (and the analysis) show
    the whole history of the weights it trained (a cool-down starts where its parent was)."""
    parent, step = Path(branch.get("parent_run", "")), int(branch.get("step", 0))
    if depth > 8 or not parent.is_dir() or not event_files(parent):
        return scalars
    history = read_run_scalars(parent)
    grandparent = _read_json(RunLayout(parent).branch_file)
    if grandparent:
        history = with_parent_history(history, grandparent, depth + 1)
    shared = shared_parent_steps(branch)
    merged = {}
    for tag in set(history) | set(scalars):
        earlier = {s: v for s, v in history.get(tag, {}).items() if 0 < s <= shared}
        merged[tag] = dict(sorted({**earlier, **scalars.get(tag, {})}.items()))
    return merged


def parent_records(branch: dict | None, which: str, depth: int = 0) -> list[dict]:
    """The records (``which``: ``"changes_file"`` or ``"interventions_file"``) of the history a branch shares with its
    parent (and the parent's own parents): a hand change or a rollback of the parent before the branch step is part
    of the branch's history too, so its analysis excuses and counts what the parent's does."""
    if not branch or depth > 8:
        return []
    parent, shared = Path(branch.get("parent_run", "")), shared_parent_steps(branch)
    layout = RunLayout(parent)
    if not parent.is_dir():
        return []
    inherited = parent_records(_read_json(layout.branch_file), which, depth + 1) + read_jsonl(getattr(layout, which))
    kept = [r for r in inherited if _in_shared_history(r, shared, which)]
    line = abandoned_line(branch)
    if line:  # the records of the abandoned line's own steps went with it (checkpointing.set_aside_records)
        aside = read_jsonl(layout.abandoned_dir / line / getattr(layout, which).name)
        kept += [r for r in aside if not _in_shared_history(r, shared, which)
                 and _in_shared_history(r, int(branch.get("step", 0)), which)]
    return kept


def _in_shared_history(record: dict, shared: int, which: str) -> bool:
    """A return to an earlier step (a rollback: ``to_step``) and a resume's changes take effect after their step, so
    they belong to the shared history only before the shared step; a skipped update at the shared step does too."""
    if "to_step" in record:
        return int(record["to_step"]) < shared
    step = int(record.get("step", 0))
    return step < shared if which == "changes_file" else step <= shared


def shared_parent_steps(branch: dict) -> int:
    """How many of its parent's steps a branch shares with the parent's history as it is now: all up to the branch
    step, unless it branched from a line of the parent that a rollback or resume abandoned; then only the steps
    before that line was left (the parent's later steps are another history, and the abandoned line's own steps
    are no longer in its TensorBoard files: the branch's curves have a gap there, not another run's values)."""
    step, line = int(branch.get("step", 0)), abandoned_line(branch)
    shared = shared_history_step(Path(branch.get("parent_run", "")), line) if line else None
    return step if shared is None else min(step, shared)


def abandoned_line(branch: dict) -> str | None:
    """The abandoned line of its parent a branch was taken from (None: the parent's own line). Its branch.json names
    it; records written before it did give the checkpoint's path (``checkpoints/abandoned/<line>/step_N``)."""
    return branch.get("abandoned_branch") or run_of_checkpoint(branch.get("checkpoint") or ".")[1]


class RunReadError(UserError):
    """A file the analysis needs is missing or malformed; the message names it."""


def read_reference_eval(path: Path) -> dict:
    """The reference's row of an evaluate_checkpoints.py JSON (or of a run's reference_eval.json)."""
    if not path.is_file():
        raise RunReadError(f"Reference evaluation {path} does not exist (write it with scripts/evaluate_checkpoints.py "
                           "--reference gpt2).")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunReadError(f"Reference evaluation {path} is not valid JSON ({error}).") from error
    reference = payload.get("reference", payload) if isinstance(payload, dict) else None
    if not isinstance(reference, dict) or not isinstance(reference.get("val_loss"), (int, float)):
        raise RunReadError(f"Reference evaluation {path} has no reference val_loss (expected the JSON written by "
                           "scripts/evaluate_checkpoints.py --reference ...).")
    return reference


def _dataset_tokens(config: dict) -> int | None:
    candidates = []
    settings = flatten(config)
    if settings.get("data"):
        candidates.append(Path(settings["data"]))
    if settings.get("output_dir"):
        candidates.append(RunLayout(settings["output_dir"]).prepared_shards_dir)
    for folder in candidates:
        meta = folder / "meta.json"
        if meta.exists():
            return int(json.loads(meta.read_text()).get("tokens", {}).get("train", 0)) or None
    return None
