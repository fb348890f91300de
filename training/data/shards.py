"""Token shard files: names, atomic writes, validated reads, and the dataset's ``meta.json``.

The layout is build-nanogpt's, so its loader reads our shards and ours reads its shards:
``<name>_val_000000.npy`` (validation, the first shard), ``<name>_train_000001.npy``, ... each a 1-D uint16
``.npy`` array in which every document starts with the EOT token (50256).
"""

import json
import os
import re
from pathlib import Path

import numpy as np

SHARD_DTYPE = np.uint16
META_FILE = "meta.json"
META_VERSION = 1
_SHARD_RE = re.compile(r"^(?P<name>.+)_(?P<split>train|val)_(?P<index>\d{6})\.npy$")


class ShardError(ValueError):
    """A shard file is unusable; the message names the file and what is wrong."""


def shard_filename(name: str, split: str, index: int) -> str:
    return f"{name}_{split}_{index:06d}.npy"


def write_shard_atomic(path: str | os.PathLike, tokens: np.ndarray) -> None:
    """Write ``tokens`` to ``path`` through a temporary file and a rename, so a crash never leaves a half shard
    under a name a loader would read (``*.npy.tmp`` does not match the shard pattern)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(tokens, dtype=SHARD_DTYPE))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def find_shards(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """Shard files of one split in ``data_dir``, in index order."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"Data directory {data_dir} does not exist; create shards with scripts/prepare_data.py or pass --data."
        )
    shards = []
    for path in data_dir.iterdir():
        match = _SHARD_RE.match(path.name)
        if match and match["split"] == split:
            shards.append((int(match["index"]), path))
    return [path for _, path in sorted(shards)]


def open_shard(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a shard and check its dtype, shape and size (cheap: reads the header only)."""
    path = Path(path)
    try:
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ShardError(f"Shard {path} is not a readable .npy file ({error}); delete it and re-run preparation.")
    if tokens.dtype != SHARD_DTYPE:
        raise ShardError(f"Shard {path} has dtype {tokens.dtype}; token shards must be uint16.")
    if tokens.ndim != 1:
        raise ShardError(f"Shard {path} has shape {tokens.shape}; token shards must be 1-D.")
    if tokens.size == 0:
        raise ShardError(f"Shard {path} is empty; delete it and re-run preparation.")
    return tokens


def check_token_ids(path: str | os.PathLike, tokens: np.ndarray, vocab_size: int | None) -> None:
    """Fail if a token id would index past the model's embedding table."""
    if vocab_size is None:
        return
    largest = int(tokens.max())
    if largest >= vocab_size:
        raise ShardError(
            f"Shard {path} contains token id {largest}, but the model's vocab_size is {vocab_size}; "
            "the shards were made with a larger tokenizer than the model expects."
        )


def read_meta(data_dir: str | os.PathLike) -> dict | None:
    path = Path(data_dir) / META_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_meta(data_dir: str | os.PathLike, meta: dict) -> None:
    path = Path(data_dir) / META_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)
