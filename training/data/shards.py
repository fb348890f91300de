"""Token shard files: names, atomic writes, validated reads, and the dataset's ``meta.json``.

The layout is build-nanogpt's, so its loader reads our shards and ours reads its shards:
``<name>_val_000000.npy`` (validation, the first shard), ``<name>_train_000001.npy``, ... each a 1-D uint16
``.npy`` array in which every document starts with the EOT token (50256).
"""

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..layout import SHARD_META_FILE, SHARD_NAME
from ..storage import out_of_space, space_reason

SHARD_DTYPE = np.uint16
META_FILE = SHARD_META_FILE
META_VERSION = 1
_SHARD_RE = SHARD_NAME


class ShardError(UserError):
    """A shard file is unusable; the message names the file and what is wrong."""


def shard_filename(name: str, split: str, index: int) -> str:
    return f"{name}_{split}_{index:06d}.npy"


def write_shard_atomic(path: str | os.PathLike, tokens: np.ndarray) -> None:
    """Write ``tokens`` to ``path`` through a temporary file and a rename, so a crash never leaves a half shard
    under a name a loader would read (``*.npy.tmp`` does not match the shard pattern)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(tokens, dtype=SHARD_DTYPE))
            handle.flush()
            os.fsync(handle.fileno())
    except (OSError, ValueError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        if out_of_space(error):
            free = shutil.disk_usage(path.parent).free
            raise ShardError(f"No space left while writing {path} ({space_reason(error)}): a shard needs "
                             f"{2 * len(tokens) / 1e6:,.1f} MB and {free / 1e6:,.1f} MB are free. Free space, then "
                             "re-run the same command: it resumes after the last complete shard.") from error
        raise
    os.replace(tmp, path)


def make_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` and prove it writable now (rather than at the first save); raises the OSError otherwise
    (FileExistsError when ``path`` is a file). Several processes and threads may probe one folder at once."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    # Unique per process and thread: two ranks probing one folder must not delete each other's probe (one of them
    # would then report a writable folder as unwritable).
    probe = out / f".write_probe.{os.getpid()}.{threading.get_ident()}"
    probe.write_bytes(b"")
    probe.unlink()
    return out


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
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ShardError(f"{path} is not valid JSON ({error}); it was damaged. Re-run the preparation into an empty "
                         "--output_dir (or restore meta.json from a copy).") from error
    if not isinstance(meta, dict):
        raise ShardError(f"{path} does not hold a JSON object; re-run the preparation into an empty --output_dir.")
    return meta


def file_stamp(path: str | os.PathLike) -> dict:
    """Size and modification time of a file: recorded beside a shard's largest token id, so a shard changed after
    preparation (edited, replaced, copied over) is noticed and read again instead of trusted."""
    stat = Path(path).stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def largest_token_ids(paths: list[Path]) -> dict[Path, int]:
    """The largest token id of every shard: from ``meta.json`` where preparation recorded it and the file is still
    the one it recorded (same size and modification time), else read from the shard (one pass over its tokens)."""
    recorded = {}
    for folder in {p.parent for p in paths}:
        meta = read_meta(folder) or {}
        for shard in meta.get("shards", []):
            path = folder / shard["file"]
            if "max_token_id" in shard and path.exists() and shard.get("stamp") == file_stamp(path):
                recorded[path] = shard["max_token_id"]
    return {p: recorded[p] if p in recorded else int(open_shard(p).max()) for p in paths}


def check_all_token_ids(paths: list[Path], vocab_size: int | None) -> None:
    """Every shard's ids fit the model's embedding table; checked before training, not when a shard is reached."""
    if vocab_size is None:
        return
    bad = [(p, largest) for p, largest in largest_token_ids(paths).items() if largest >= vocab_size]
    if bad:
        listed = ", ".join(f"{p.name} (max id {largest})" for p, largest in bad[:5])
        raise ShardError(f"{len(bad)} shard(s) hold token ids >= the model's vocab_size {vocab_size}: {listed}"
                         f"{', ...' if len(bad) > 5 else ''}. The shards were made with a larger tokenizer than the "
                         "model expects (or are damaged); re-prepare them or raise --vocab_size.")


def write_meta(data_dir: str | os.PathLike, meta: dict) -> None:
    path = Path(data_dir) / META_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)
