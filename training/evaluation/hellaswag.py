"""HellaSwag, completion style (as build-nanogpt and the GPT-2 numbers it quotes): each of the 4 endings is scored
by the model's loss on the ending's tokens after the context; ``acc`` picks the lowest summed loss, ``acc_norm``
the lowest mean loss per token. Batched (several examples x 4 endings per forward), split across processes.
"""

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modeling.loss import next_token_loss
from modeling.tokenization import TiktokenGPT2

from ..data.download import DownloadError, fetch_once
from ..errors import UserError
from .metrics import load_metric

HELLASWAG_VAL_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"


class HellaSwagError(UserError):
    """A missing or malformed HellaSwag file; the message names the file and line."""


@dataclass
class Example:
    ctx: str
    endings: list[str]
    label: int


def default_cache_dir() -> Path:
    return Path(os.environ.get("GPT2_PRETRAIN_CACHE", Path.home() / ".cache" / "gpt2-pretrain"))


def download_hellaswag(cache_dir: Path | None = None) -> Path:
    try:
        return fetch_once(HELLASWAG_VAL_URL, (cache_dir or default_cache_dir()) / "hellaswag_val.jsonl")
    except DownloadError as error:
        raise HellaSwagError(f"Downloading {error.url} failed ({error.reason}); pass a local hellaswag_val.jsonl "
                             "with --hellaswag_path.") from error


def load_examples(path: str | Path | None, limit: int | None = None) -> list[Example]:
    """The standard ``hellaswag_val.jsonl`` format (``ctx``, ``label``, ``endings``); downloaded when ``path`` is
    None. Malformed lines are reported with their line number."""
    path = Path(path) if path else download_hellaswag()
    if not path.is_file():
        raise HellaSwagError(f"HellaSwag file {path} does not exist.")
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            examples.append(_parse(line, path, number))
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        raise HellaSwagError(f"HellaSwag file {path} holds no examples.")
    return examples


def _parse(line: str, path: Path, number: int) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise HellaSwagError(f"{path}:{number}: not valid JSON ({error.msg}).") from error
    missing = [key for key in ("ctx", "label", "endings") if key not in record]
    if missing:
        raise HellaSwagError(f"{path}:{number}: missing field(s) {missing}; expected ctx, label, endings.")
    endings, label = record["endings"], record["label"]
    if not (isinstance(endings, list) and len(endings) == 4 and all(isinstance(e, str) for e in endings)):
        raise HellaSwagError(f"{path}:{number}: 'endings' must be a list of 4 strings.")
    if not all(e.strip() for e in endings) or not isinstance(record["ctx"], str):
        raise HellaSwagError(f"{path}:{number}: every ending must be non-empty text and 'ctx' a string.")
    if str(label) not in {"0", "1", "2", "3"}:
        raise HellaSwagError(f"{path}:{number}: 'label' must be 0..3, got {label!r}.")
    return Example(ctx=record["ctx"], endings=endings, label=int(label))


def render(example: Example, tokenizer: TiktokenGPT2, max_len: int) -> tuple[list[list[int]], list[int]]:
    """4 token rows (context + " " + ending) and, per row, where the ending starts. Contexts that do not fit
    the model's window are cut from the left."""
    ctx = tokenizer.encode(example.ctx)
    rows, starts = [], []
    for ending in example.endings:
        end = tokenizer.encode(" " + ending)[:max_len - 1]
        context = ctx[-(max_len - len(end)):]
        rows.append(context + end)
        starts.append(len(context))
    return rows, starts


@torch.no_grad()
def ending_losses(model, rows: list[list[int]], starts: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed and mean token loss of each row's ending. Rows are right-padded: with causal attention, padding
    after a row's end cannot change the logits that score it, so no attention mask is needed."""
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)  # marks ending tokens (the ones scored)
    for i, (row, start) in enumerate(zip(rows, starts)):
        tokens[i, :len(row)] = torch.tensor(row)
        mask[i, start:len(row)] = True
    tokens, mask = tokens.to(device), mask.to(device)
    logits = model(tokens, use_cache=False).logits  # (R, W, V)
    scored = mask[:, 1:]  # position t predicts token t+1; keep only positions whose target is an ending token
    # The softmax runs over the scored positions only (N rows), not all R x W: several times less memory.
    losses = next_token_loss(logits[:, :-1][scored], tokens[:, 1:][scored], reduction="none")  # (N,)
    rows_of = scored.nonzero()[:, 0]
    summed = torch.zeros(len(rows), device=device).index_add_(0, rows_of, losses)
    return summed, summed / scored.sum(dim=1)


@torch.no_grad()
def evaluate_hellaswag(model, examples: list[Example], tokenizer: TiktokenGPT2, device, batch_examples: int = 8,
                       process_index: int = 0, num_processes: int = 1, reduce=None, autocast=None,
                       progress: bool = False) -> dict:
    """acc / acc_norm over ``examples``; example i is scored by process i % num_processes and the counts are
    summed with ``reduce`` (e.g. ``accelerator.reduce``)."""
    was_training = model.training
    model.eval()
    max_len = model.config.n_positions if hasattr(model.config, "n_positions") else \
        model.config.max_position_embeddings
    mine = examples[process_index::num_processes]
    predictions, predictions_norm, labels = [], [], []
    for first in tqdm(range(0, len(mine), batch_examples), desc="hellaswag", disable=not progress):
        batch = mine[first:first + batch_examples]
        rows, starts = [], []
        for example in batch:
            example_rows, example_starts = render(example, tokenizer, max_len)
            rows += example_rows
            starts += example_starts
        with autocast() if autocast is not None else torch.autocast(torch.device(device).type, enabled=False):
            summed, mean = ending_losses(model, rows, starts, device)
        predictions += summed.view(-1, 4).argmin(dim=1).tolist()
        predictions_norm += mean.view(-1, 4).argmin(dim=1).tolist()
        labels += [example.label for example in batch]
    model.train(was_training)
    metric = accuracy_metric()
    acc = metric.compute(predictions=predictions, references=labels) if labels else {"correct": 0, "total": 0}
    acc_norm = metric.compute(predictions=predictions_norm, references=labels) if labels else {"correct": 0}
    counts = torch.tensor([acc["correct"], acc_norm["correct"], acc["total"]], dtype=torch.float64, device=device)
    if reduce is not None:
        counts = reduce(counts, "sum")
    correct, correct_norm, total = counts.tolist()
    return {"acc": correct / total, "acc_norm": correct_norm / total, "examples": int(total)}


@lru_cache(maxsize=1)
def accuracy_metric():
    return load_metric("multiple_choice_accuracy")


class HellaSwagInLoop:
    """HellaSwag during training (``--hellaswag_every``): owns the examples, loaded on first use and kept."""

    def __init__(self, path: str | None, limit: int | None = None):
        self.path, self.limit = path, limit
        self._examples: list[Example] | None = None

    def examples(self) -> list[Example]:
        if self._examples is None:
            self._examples = load_examples(self.path, self.limit)
        return self._examples

    def __call__(self, model, tokenizer: TiktokenGPT2, accelerator) -> dict:
        return evaluate_hellaswag(model, self.examples(), tokenizer, accelerator.device,
                                  process_index=accelerator.process_index, num_processes=accelerator.num_processes,
                                  reduce=accelerator.reduce, autocast=accelerator.autocast)
