"""The names that writers and readers of a run must agree on: run-folder paths, checkpoint names, TensorBoard tags.

The loop, the diagnostics and evaluation write under these names; analysis, plots, the report, the Hub staging
and the comparison read them back. Everything outside this module uses the constants and helpers below, never a
literal, so a renamed tag or folder changes both sides at once (a test checks that no other module spells them).

This module is a leaf: it imports nothing of the project.

A run folder::

    <run>/config.yaml                     the resolved configuration
    <run>/events.out.tfevents.*           TensorBoard event files (tensorboard --logdir runs/ lists <run>)
    <run>/reference_eval.json             the same numbers as JSON
    <run>/checkpoints/step_0001000/       accelerator.save_state + model/ (a from_pretrained folder)
    <run>/checkpoints/abandoned/<branch>/ checkpoints (and final/) of a branch left behind by a rollback
    <run>/final/                          the final model (a from_pretrained folder)
    <run>/changes.jsonl                   settings changed on resume (step, old -> new), one line per resume
    <run>/interventions.jsonl             what the spike guard did (skips, rollbacks, stops), one line each
    <run>/branch.json                     where a branched run (a cool-down) came from
    <run>/.run.lock                       the live run that owns the folder (host, pid); removed when it ends
    <run>/.gpt2-pretrain.json             the marker: this folder holds a run of this project (written first)
    <run>/data/shards/                    shards prepared on the fly from a corpus given as --data
    <run>/data/download/                  a corpus downloaded because no --data was given
    <run>/analysis/                       plots and report of analyze_run.py
    <run>/layers/h.00/events.out.tfevents.*  one TensorBoard run per block: its per-layer ratios, one tag per kind
    <run>/analysis/eval_<model>.json      evaluate_checkpoints.py's results for <run>/final or a checkpoint
"""

import re
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------------------------- files
CONFIG_FILE = "config.yaml"
# TensorBoard event files are written into the run folder itself, so `tensorboard --logdir runs/` lists each run
# by its own name. Runs of earlier versions wrote them into a tensorboard/ subfolder, which readers still read.
TENSORBOARD_PROJECT = ""  # the project name given to Accelerate's tracker: it names a subfolder, so none
LEGACY_TENSORBOARD_DIR = "tensorboard"
EVENT_FILE_PREFIX = "events.out.tfevents."
TRACKER = "tensorboard"  # Accelerate's tracker type (log_with=); also the name get_tracker() finds it by
REFERENCE_EVAL_FILE = "reference_eval.json"
CHECKPOINTS_DIR = "checkpoints"
ABANDONED_DIR = "abandoned"  # inside checkpoints/: branches left behind by a rollback
FINAL_DIR = "final"
DATA_DIR = "data"
PREPARED_SHARDS_SUBDIR = "shards"
DOWNLOAD_SUBDIR = "download"
ANALYSIS_DIR = "analysis"
LAYERS_DIR = "layers"  # <run>/layers/h.NN/: one TensorBoard run per transformer block (lines told apart by colour)
EVAL_FILE = "eval_{model}.json"  # in analysis/: evaluate_checkpoints.py's results for one of the run's models
CHANGES_FILE = "changes.jsonl"
INTERVENTIONS_FILE = "interventions.jsonl"
BRANCH_FILE = "branch.json"
LOCK_FILE = ".run.lock"
# Written first into every run folder: the folder holds a run of this project, and lists the names a run creates.
# Only folders with it are ever cleared (--overwrite_output_dir, sweep re-runs), and only of those names.
MARKER_FILE = ".gpt2-pretrain.json"
# In folders the project fills with outputs of several writers (analysis/, a Hub staging folder): the names written.
WRITTEN_FILE = ".written.json"
SWEEP_RUN_FILE = "sweep_run.json"  # a sweep's record of one of its runs (e.g. diverged: its last good step and loss)
COMPARISON_DIR = "comparison"

# Inside a checkpoint folder and a model folder.
CHECKPOINT_MODEL_SUBDIR = "model"
TRAINING_STATE_FILE = "training_state.json"
MANIFEST_FILE = "manifest.json"  # size and CRC32 of every file of a checkpoint, written last, checked on resume
RUN_CONFIG_FILE = "run_config.yaml"

# Token shards (build-nanogpt's layout): <name>_val_000000.npy, <name>_train_000001.npy, ...; META_FILE beside them.
SHARD_NAME = re.compile(r"^(?P<name>.+)_(?P<split>train|val)_(?P<index>\d{6})\.npy$")
SHARD_META_FILE = "meta.json"

_CHECKPOINT_NAME = re.compile(r"^step_(\d{7})$")
_TEMPORARY_SUFFIX = ".tmp"
_PREVIOUS_SUFFIX = ".previous"


def checkpoint_name(step: int) -> str:
    """``1000`` -> ``step_0001000`` (also the Hub branch of a pushed checkpoint)."""
    return f"step_{step:07d}"


def checkpoint_step(name: str) -> int | None:
    """``step_0001000`` -> 1000; None for any other name (temporary folders included)."""
    match = _CHECKPOINT_NAME.match(name)
    return int(match[1]) if match else None


def temporary_name(name: str) -> str:
    """The name a folder is written under before it is complete (never matched by ``checkpoint_step``)."""
    return name + _TEMPORARY_SUFFIX


def is_temporary(name: str) -> bool:
    return name.endswith(_TEMPORARY_SUFFIX)


def previous_name(name: str) -> str:
    """Where a folder being replaced waits until its successor is in place."""
    return name + _PREVIOUS_SUFFIX


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run folder."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def tensorboard_dir(self) -> Path:
        """Where the run's event files are written: the run folder itself."""
        return self.root

    def event_files(self) -> list[Path]:
        """The run's TensorBoard event files: in the run folder, and in the tensorboard/ subfolder older versions
        wrote (a resumed old run has both)."""
        found = [p for p in self.root.glob(EVENT_FILE_PREFIX + "*") if p.is_file()] if self.root.is_dir() else []
        legacy = self.root / LEGACY_TENSORBOARD_DIR
        if legacy.is_dir():
            found += [p for p in legacy.rglob(EVENT_FILE_PREFIX + "*") if p.is_file()]
        return found

    @property
    def reference_eval_file(self) -> Path:
        return self.root / REFERENCE_EVAL_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / checkpoint_name(step)

    @property
    def abandoned_dir(self) -> Path:
        """``checkpoints/abandoned/``: one folder per line a return to an earlier checkpoint left behind."""
        return self.checkpoints_dir / ABANDONED_DIR

    def checkpoint_model_dir(self, step: int) -> Path:
        return self.checkpoint_dir(step) / CHECKPOINT_MODEL_SUBDIR

    @property
    def final_dir(self) -> Path:
        return self.root / FINAL_DIR

    @property
    def prepared_shards_dir(self) -> Path:
        return self.root / DATA_DIR / PREPARED_SHARDS_SUBDIR

    @property
    def download_dir(self) -> Path:
        return self.root / DATA_DIR / DOWNLOAD_SUBDIR

    @property
    def analysis_dir(self) -> Path:
        return self.root / ANALYSIS_DIR

    @property
    def layers_dir(self) -> Path:
        return self.root / LAYERS_DIR

    def block_run_dir(self, block: int) -> Path:
        """The TensorBoard run of transformer block ``block`` (``layers/h.03``): TensorBoard lists it as
        ``<run>/layers/h.03`` and colours its lines apart from the other blocks'."""
        return self.layers_dir / f"h.{block:02d}"

    @property
    def changes_file(self) -> Path:
        return self.root / CHANGES_FILE

    @property
    def interventions_file(self) -> Path:
        return self.root / INTERVENTIONS_FILE

    @property
    def branch_file(self) -> Path:
        return self.root / BRANCH_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def sweep_run_file(self) -> Path:
        return self.root / SWEEP_RUN_FILE

    def eval_file(self, model: str) -> Path:
        """Where ``evaluate_checkpoints.py`` writes its results for ``model`` (``final`` or ``step_N``)."""
        return self.analysis_dir / EVAL_FILE.format(model=model)

    def run_outputs(self) -> list[Path]:
        """What a run wrote here that another run must not mix with (prepared data, a reusable cache, is not
        listed)."""
        candidates = [self.config_file, self.root / LEGACY_TENSORBOARD_DIR, self.final_dir, self.analysis_dir,
                      self.layers_dir,
                      self.changes_file, self.interventions_file, self.branch_file, self.reference_eval_file,
                      self.sweep_run_file]
        found = [p for p in candidates if p.exists() and not (p.is_dir() and not any(p.iterdir()))]
        found += sorted(p for p in self.root.glob(EVENT_FILE_PREFIX + "*")) if self.root.is_dir() else []
        if self.checkpoints_dir.is_dir() and any(checkpoint_step(p.name) is not None or p.name == ABANDONED_DIR
                                                 for p in self.checkpoints_dir.iterdir()):
            found.append(self.checkpoints_dir)
        return found

    def looks_like_run(self) -> bool:
        return self.config_file.exists() or bool(self.event_files())


def run_of_model_folder(model_folder: str | Path) -> tuple[RunLayout, str] | None:
    """``<run>/final`` -> (run, "final"); ``<run>/checkpoints/step_N/model`` -> (run, "step_N"); None otherwise."""
    path = Path(model_folder)
    if path.name == CHECKPOINT_MODEL_SUBDIR:
        path = path.parent
    if path.name == FINAL_DIR:
        return RunLayout(path.parent), path.name
    if checkpoint_step(path.name) is not None and path.parent.name == CHECKPOINTS_DIR:
        return RunLayout(path.parent.parent), path.name
    return None


_ABANDONED_LINE = re.compile(r"^after_step_(\d{7})_(\d{8}-\d{6})(?:\.(\d+))?$")


def abandoned_line_origin(name: str) -> tuple[int, tuple] | None:
    """``after_step_0000200_20261205-031500[.N]`` (``CheckpointManager.new_branch_dir``) -> (200, its order in time):
    the step a return to an earlier checkpoint left this line at. None for any other name."""
    match = _ABANDONED_LINE.match(name)
    return (int(match[1]), (match[2], int(match[3] or 0))) if match else None


def shared_history_step(run: Path, line: str) -> int | None:
    """The last step that the abandoned ``line`` of ``run`` still shares with the run's history as it is now: the
    step the line was left at, or an earlier step a later return went back to (each return rewrites the run's
    history after its step). None if ``line`` is not an abandoned line's name."""
    origin = abandoned_line_origin(line)
    if origin is None:
        return None
    step, made = origin
    folder = RunLayout(run).abandoned_dir
    later = [abandoned_line_origin(p.name) for p in folder.iterdir()] if folder.is_dir() else []
    return min([step] + [other[0] for other in later if other and other[1] > made])


def run_of_checkpoint(checkpoint: str | Path) -> tuple[Path, str | None]:
    """The run folder a checkpoint belongs to, and the abandoned branch it lies in (None on the run's own line):
    ``<run>/checkpoints/step_N`` -> (run, None); ``<run>/checkpoints/abandoned/<branch>/step_N`` -> (run, branch)."""
    path = Path(checkpoint).resolve()
    if path.parent.parent.name == ABANDONED_DIR and path.parent.parent.parent.name == CHECKPOINTS_DIR:
        return path.parent.parent.parent.parent, path.parent.name
    return path.parent.parent, None


# ----------------------------------------------------------------------------------------------- TensorBoard
class Tags:
    """TensorBoard tag names. Families end with ``/`` and are followed by a parameter or block name."""

    # written every logged step by the loop
    TRAIN_LOSS = "train/loss"
    TRAIN_LR = "train/lr"
    TRAIN_LR_MUON = "train/lr_muon"  # with --optimizer muon: the Muon group's learning rate
    TRAIN_Z_LOSS = "train/z_loss"  # with --z_loss: the auxiliary term (train/loss stays the cross-entropy)
    TRAIN_GRAD_NORM = "train/grad_norm"
    TRAIN_TOKENS_SEEN = "train/tokens_seen"
    TRAIN_TOKENS_PER_SEC = "train/tokens_per_sec"
    TRAIN_STEP_TIME_MS = "train/step_time_ms"
    TRAIN_EPOCH = "train/epoch"
    TRAIN_SKIPPED_UPDATES = "train/skipped_updates"
    TRAIN_MFU = "train/mfu"
    TRAIN_PEAK_MEMORY_GB = "train/peak_memory_gb"
    TRAIN_CLIPPED = "train/clipped"
    TRAIN_CLIPPED_FRACTION = "train/clipped_fraction"
    TRAIN_GRAD_CLIP = "train/grad_clip"  # the clip threshold beside the norm (TensorBoard's gradient-norm chart)

    # the gradient noise scale (McCandlish et al. 2018), at the diagnostics cadence
    NOISE_SCALE_TOKENS = "noise/b_simple_tokens"  # B_simple = tr(Sigma) / |G|^2, in tokens (smoothed)
    NOISE_GRAD_SQ = "noise/grad_sq"  # the unbiased estimate of |G|^2 (smoothed)
    NOISE_TRACE = "noise/trace_sigma"  # the unbiased estimate of tr(Sigma), per token (smoothed)
    NOISE_TOKENS_PER_STEP = "noise/tokens_per_step"  # the run's batch, beside B_simple in the same chart

    # where the time goes (training/diagnostics/timing.py), in milliseconds: every step, and the occasional work at its step
    TIME = "time/"  # + data, forward_backward, callbacks, optimizer, evaluation, hellaswag, checkpoint, ...

    # written once at step 0: facts of the run
    RUN_GRAD_ACCUM_STEPS = "run/grad_accum_steps"
    RUN_TOKENS_PER_STEP = "run/tokens_per_step"
    RUN_NUM_PROCESSES = "run/num_processes"
    RUN_GRAD_CLIP = "run/grad_clip"
    RUN_PARAMETERS = "run/parameters"
    RUN_VOCAB_SIZE = "run/vocab_size"
    # written at the step where they happen
    RUN_SETTINGS_CHANGED = "run/settings_changed"  # number of settings changed by hand on a resume
    SPIKE_GUARD_ACTION = "spike_guard/action"  # 1 skip, 2 rollback, 3 stop (see INTERVENTIONS_FILE for the details)
    SPIKE_GUARD_ARMED = "spike_guard/armed"  # 0 at the first step (divergence watched only), 1 from the step it arms

    # evaluation
    VAL_LOSS = "val/loss"
    VAL_PERPLEXITY = "val/perplexity"
    HELLASWAG_ACC = "hellaswag/acc"
    HELLASWAG_ACC_NORM = "hellaswag/acc_norm"
    REFERENCE_VAL_LOSS = "reference/val_loss"
    REFERENCE_HELLASWAG_ACC_NORM = "reference/hellaswag_acc_norm"
    REFERENCE_MODEL = "reference/model"

    # diagnostics callbacks
    GRAD_NORM_PARAM = "grad_norm_param/"
    GRAD_NORM_BLOCK = "grad_norm_block/"
    GRAD_RATIO = "grad_ratio/"
    UPDATE_RATIO = "update_ratio/"
    UPDATE_RATIO_GRAD = "update_ratio_grad/"  # the update without AdamW's decoupled decay: what gradients moved
    # In each block's own run (layers/h.NN): the block's ratios, one tag per kind of matrix, e.g.
    # by_block/update_ratio/attn.c_attn; a chart of one kind draws every block, each in its run's colour.
    BY_BLOCK = "by_block/"
    UPDATE_RATIO_DECAY = "update_ratio_decay/"  # lr * weight_decay: the decay's share, known exactly
    WEIGHT_RMS = "weight_rms/"
    SPIKE_LOSS_Z = "spikes/loss_z"
    SPIKE_GRAD_NORM_Z = "spikes/grad_norm_z"
    SPIKE_IS_SPIKE = "spikes/is_spike"
    SPIKE_COUNT = "spikes/count"

    # histograms (HistogramCallback)
    WEIGHTS = "weights/"
    GRADIENTS = "gradients/"
    UPDATES = "updates/"

    # text
    SAMPLES = "samples"
    CONFIG_TEXT = "config"
    CHANGES_TEXT = "run/changes"  # what a resume changed (old -> new), at the resumed step
    INTERVENTIONS_TEXT = "spike_guard/interventions"  # what the spike guard did
