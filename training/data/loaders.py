"""Loaders over token shards: an endless, resumable, rank-strided training stream and a fixed validation set.

The training shards form one stream: epoch 0's shards in order, then epoch 1's, and so on (shard order and the
order of documents inside each shard optionally permuted per epoch from a seed). Every optimizer step consumes
the next ``num_processes * B * T`` tokens of the stream; rank r takes the r-th ``B * T`` slice (plus one token
for the shifted targets), so ranks never overlap, nothing is dropped at shard or epoch boundaries, and the whole
position is three integers that a checkpoint can restore.
"""

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .shards import ShardError, check_all_token_ids, check_token_ids, find_shards, open_shard

EOT_TOKEN_ID = 50256


@dataclass(frozen=True)
class Cursor:
    """A position in the stream: ``epoch``, index ``pos`` into that epoch's shard order, token ``offset``."""

    epoch: int = 0
    pos: int = 0
    offset: int = 0


class TokenStream:
    """Training shards seen as one endless token sequence."""

    def __init__(self, paths: list[Path], vocab_size: int | None = None, shuffle: bool = False, seed: int = 0,
                 eot_token_id: int = EOT_TOKEN_ID, cached_shards: int = 2):
        if not paths:
            raise ShardError("No training shards were found; prepare data first (scripts/prepare_data.py).")
        self.paths = [Path(p) for p in paths]
        self.lengths = [len(open_shard(p)) for p in self.paths]
        check_all_token_ids(self.paths, vocab_size)
        self.vocab_size, self.shuffle, self.seed, self.eot = vocab_size, shuffle, seed, eot_token_id
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached_shards = cached_shards

    def shard_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.paths)))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.paths)).tolist()

    def shard(self, epoch: int, shard_id: int) -> np.ndarray:
        """The tokens of one shard as seen in ``epoch`` (documents permuted when shuffling)."""
        key = (epoch if self.shuffle else 0, shard_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        tokens = open_shard(self.paths[shard_id])
        if self.shuffle:
            tokens = self._shuffle_documents(tokens, epoch, shard_id)
        self._cache[key] = tokens
        while len(self._cache) > self._cached_shards:
            self._cache.popitem(last=False)
        return tokens

    def _shuffle_documents(self, tokens: np.ndarray, epoch: int, shard_id: int) -> np.ndarray:
        # Documents start at EOT; a shard may open with the tail of a document that began in the previous shard,
        # which simply becomes one more segment to permute.
        starts = np.flatnonzero(tokens == self.eot)
        bounds = np.unique(np.concatenate([[0], starts, [len(tokens)]]))
        segments = [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        order = np.random.default_rng([self.seed, epoch, shard_id]).permutation(len(segments))
        return np.concatenate([segments[i] for i in order])

    def advance(self, cursor: Cursor, n: int) -> Cursor:
        epoch, pos, offset = cursor.epoch, cursor.pos, cursor.offset + n
        order = self.shard_order(epoch)
        while offset >= self.lengths[order[pos]]:
            offset -= self.lengths[order[pos]]
            pos += 1
            if pos == len(order):
                epoch, pos = epoch + 1, 0
                order = self.shard_order(epoch)
        return Cursor(epoch, pos, offset)

    def read(self, cursor: Cursor, length: int) -> np.ndarray:
        """``length`` tokens from ``cursor`` on, crossing shard and epoch boundaries."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        while filled < length:
            shard_id = self.shard_order(cursor.epoch)[cursor.pos]
            tokens = self.shard(cursor.epoch, shard_id)
            take = min(length - filled, len(tokens) - cursor.offset)
            out[filled:filled + take] = tokens[cursor.offset:cursor.offset + take]
            filled += take
            cursor = self.advance(cursor, take)
        return out


class DistributedTokenLoader:
    """Yields ``(x, y)`` int64 batches of shape (B, T), ``y`` shifted by one, this rank's slice of each step.

    ``process_index`` / ``num_processes`` come from ``accelerator``; all ranks hold the same cursor, so any rank's
    ``state_dict()`` restores every rank.
    """

    def __init__(self, shards: list[Path] | str | os.PathLike, batch_size: int, seq_len: int,
                 process_index: int = 0, num_processes: int = 1, vocab_size: int | None = None,
                 shuffle: bool = False, seed: int = 0):
        if isinstance(shards, (str, os.PathLike)):
            shards = find_shards(shards, "train")
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} is outside 0..{num_processes - 1}.")
        self.stream = TokenStream(shards, vocab_size=vocab_size, shuffle=shuffle, seed=seed)
        self.B, self.T = batch_size, seq_len
        self.rank, self.world = process_index, num_processes
        self.cursor = Cursor()
        self.batches_yielded = 0

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by all ranks together for one batch each."""
        return self.B * self.T * self.world

    @property
    def epoch(self) -> int:
        return self.cursor.epoch

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.stream.advance(self.cursor, self.rank * self.B * self.T)
        tokens = self.stream.read(start, self.B * self.T + 1)
        self._check_ids(tokens, start)
        tokens = torch.from_numpy(tokens)
        x = tokens[:-1].view(self.B, self.T)  # (B, T) inputs
        y = tokens[1:].view(self.B, self.T)  # (B, T) next-token targets
        self.cursor = self.stream.advance(self.cursor, self.tokens_per_step)
        self.batches_yielded += 1
        return x, y

    def skip_tokens(self, count: int) -> None:
        """Move the stream's position ``count`` tokens forward (all ranks alike): data that is never read (the
        batches that followed a loss spike, after a rollback)."""
        self.cursor = self.stream.advance(self.cursor, count)

    def _check_ids(self, tokens: np.ndarray, start: Cursor) -> None:
        """Every batch is checked against the vocabulary before it reaches the model (a few microseconds): an id
        past the embedding table would be an IndexError on CPU and a device-side assert on a GPU, far from its
        cause. The start-up check trusts what preparation recorded about unchanged shards; this one trusts nothing."""
        vocab = self.stream.vocab_size
        if vocab is None or int(tokens.max()) < vocab:
            return
        shard = self.stream.paths[self.stream.shard_order(start.epoch)[start.pos]]
        raise ShardError(f"Token id {int(tokens.max())} >= the model's vocab_size {vocab} in the batch read from "
                         f"{shard} (from token {start.offset:,}, epoch {start.epoch}): the shard holds ids the model "
                         "cannot embed (damaged, or made with another tokenizer). Re-prepare it, or raise "
                         "--vocab_size.")

    def state_dict(self) -> dict:
        return {"epoch": self.cursor.epoch, "pos": self.cursor.pos, "offset": self.cursor.offset,
                "batches_yielded": self.batches_yielded, "shards": [p.name for p in self.stream.paths],
                "shuffle": self.stream.shuffle, "seed": self.stream.seed}

    def load_state_dict(self, state: dict) -> None:
        names = [p.name for p in self.stream.paths]
        if state["shards"] != names or state["shuffle"] != self.stream.shuffle or state["seed"] != self.stream.seed:
            raise ConfigError(
                "The checkpoint's data position refers to other shards or shuffling settings "
                f"(shards {state['shards'][:3]}..., shuffle={state['shuffle']}, seed={state['seed']}) than this "
                f"run (shards {names[:3]}..., shuffle={self.stream.shuffle}, seed={self.stream.seed}); resume with "
                "the same data settings."
            )
        self.cursor = Cursor(state["epoch"], state["pos"], state["offset"])
        self.batches_yielded = state.get("batches_yielded", 0)


class ValidationSet:
    """The first validation tokens, cut into the same (B, T) batches at every evaluation."""

    def __init__(self, shards: list[Path] | str | os.PathLike, vocab_size: int | None = None,
                 max_tokens: int | None = None):
        where = ""
        if isinstance(shards, (str, os.PathLike)):
            where = f" in {shards}"
            shards = find_shards(shards, "val")
        if not shards:
            raise ShardError(f"No validation shard (*_val_000000.npy){where}; prepare data with "
                             "scripts/prepare_data.py or point to the folder that holds it.")
        need = None if max_tokens is None else max_tokens + 1  # +1: the last target
        pieces, total = [], 0
        for path in shards:
            tokens = open_shard(path)
            check_token_ids(path, tokens, vocab_size)
            pieces.append(np.asarray(tokens if need is None else tokens[: need - total]))
            total += len(pieces[-1])
            if need is not None and total >= need:
                break
        self.tokens = torch.from_numpy(np.concatenate(pieces).astype(np.int64))
        self.paths = [Path(p) for p in shards]

    def batches(self, batch_size: int, seq_len: int, process_index: int = 0, num_processes: int = 1,
                max_tokens: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the fixed validation batches: batch i goes to rank i % num_processes."""
        usable = len(self.tokens) - 1
        if max_tokens is not None:
            usable = min(usable, max_tokens)
        sequences = usable // seq_len
        if sequences == 0:
            raise ShardError(
                f"The validation shard {self.paths[0]} has {len(self.tokens)} tokens, fewer than seq_len+1="
                f"{seq_len + 1}; prepare a larger validation shard (--val_tokens)."
            )
        starts = range(0, sequences, batch_size)
        for batch_index, first in enumerate(starts):
            if batch_index % num_processes != process_index:
                continue
            rows = min(batch_size, sequences - first)
            span = self.tokens[first * seq_len: (first + rows) * seq_len + 1]
            yield span[:-1].view(rows, seq_len), span[1:].view(rows, seq_len)

    def num_tokens(self, seq_len: int, max_tokens: int | None = None) -> int:
        usable = len(self.tokens) - 1 if max_tokens is None else min(len(self.tokens) - 1, max_tokens)
        return (usable // seq_len) * seq_len
