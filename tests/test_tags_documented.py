"""The TensorBoard tag table in the docs is what runs write: every documented tag is written by a run that uses the
feature, and every tag a run writes is documented (read back with TensorBoard's own reader)."""

import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import HISTOGRAMS, SCALARS, TENSORS, EventAccumulator
from transformers import TrainerCallback

from training.evaluation.comparison import record_reference
from training.layout import RunLayout

from .conftest import REPO_ROOT, data_file
from .helpers import tiny_run_config, train

TAG_DOC = REPO_ROOT / "docs" / "tensorboard.md"  # the page holding the "What is logged" table
# TensorBoard's own bookkeeping, not tags of this project.
INTERNAL = re.compile(r"^(custom_scalars__config__|_hparams_/.*)$")


def documented_tags() -> list[str]:
    """The tags of the table under "What is logged": every `code` name in the first column; a name ending in "/",
    "/*" or "/<...>" stands for a family of tags with that prefix."""
    text = TAG_DOC.read_text()
    start = text.index("What is logged")
    table = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    names = []
    for row in table[2:]:
        first = row.split("|")[1]
        names += re.findall(r"`([^`]+)`", first)
    return names


def pattern(name: str) -> re.Pattern:
    """A documented name as a pattern: `<name>` and `*` stand for any text, `N` for a block number, a trailing "/"
    for any tag of the family."""
    parts = re.split(r"(<[^>]+>|\*|\bN\b)", name)
    regex = "".join(".+" if p.startswith("<") or p == "*" else r"\d+" if p == "N" else re.escape(p) for p in parts)
    return re.compile(regex + (".+" if name.endswith("/") else "") + "$")


def matches(tag: str, documented: str) -> bool:
    return pattern(documented).match(tag) is not None


def written_tags(run_dir) -> set[str]:
    tags = set()
    layout = RunLayout(run_dir)
    for path in layout.event_files() + sorted(layout.layers_dir.rglob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0, HISTOGRAMS: 0})
        events.Reload()
        found = events.Tags()
        tags |= set(found.get("scalars", [])) | set(found.get("histograms", []))
        tags |= {t.replace("/text_summary", "") for t in found.get("tensors", [])}
    return {t for t in tags if not INTERNAL.match(t)}


class OneStepBurst(TrainerCallback):
    """One update at 10,000x the learning rate, once (it is not part of a checkpoint, so a rollback does not bring
    it back): the next steps' loss is far above the start, and the spike guard steps in."""

    def __init__(self, step: int):
        self.step, self.done = step, False

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if not self.done and state.global_step + 1 == self.step:
            self.done = True
            for group in optimizer.param_groups:
                group["lr"] *= 1e4


def test_every_documented_tag_is_written_and_every_written_tag_is_documented(tmp_path, shakespeare_shards):
    hellaswag = data_file("hellaswag_val_subset1000.jsonl")
    everything = dict(max_steps=24, save_every=5, eval_every=6, eval_tokens=2048, sample_every=12, sample_tokens=8,
                      z_loss=1e-4,
                      hellaswag_every=12, hellaswag_path=str(hellaswag), hellaswag_limit=4, spike_guard=True,
                      spike_guard_window=20, diagnostics_every=3, histogram_every=6, peak_flops=1e12,
                      callbacks=["grad_norm", "layer_ratios", "histograms", "spike_detector"])
    main = tmp_path / "main"
    train(tiny_run_config(main, shakespeare_shards, **everything), callbacks=[OneStepBurst(16)])
    # A resume with a changed setting (run/settings_changed, run/changes), a measured reference (reference/*).
    train(tiny_run_config(main, shakespeare_shards, **{**everything, "max_steps": 26, "max_lr": 2e-3,
                                                       "resume_from_checkpoint": "latest"}))
    record_reference(main, {"name": "gpt2", "path": "gpt2", "val_loss": 3.3, "hellaswag_acc_norm": 0.3})
    muon = tmp_path / "muon"
    train(tiny_run_config(muon, shakespeare_shards, max_steps=2, optimizer="muon"))
    written = written_tags(main) | written_tags(muon)

    documented = documented_tags()
    assert documented, f"no tag table found in {TAG_DOC}"
    never_written = [name for name in documented if not any(matches(tag, name) for tag in written)]
    undocumented = sorted(tag for tag in written if not any(matches(tag, name) for name in documented))
    assert not never_written, f"documented in {TAG_DOC.name} but written by no run: {never_written}"
    assert not undocumented, f"written by a run but not documented in {TAG_DOC.name}: {undocumented}"


@pytest.mark.parametrize("name,tag,expected", [("grad_ratio/<name>", "grad_ratio/h.0.attn.c_attn.weight", True),
                                               ("spikes/*", "spikes/loss_z", True),
                                               ("grad_norm_block/h.N", "grad_norm_block/h.11", True),
                                               ("weights/", "weights/wte.weight", True),
                                               ("train/loss", "train/loss_x", False)])
def test_the_table_reader_matches_families_and_names(name, tag, expected):
    assert matches(tag, name) is expected
