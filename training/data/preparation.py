"""Corpus -> token shards: FineWeb-Edu (streamed from the Hub) or local .txt/.jsonl/.json/.parquet files.

Every document becomes ``[EOT, *tokens]``; tokens are packed into uint16 shards of ``shard_tokens`` tokens, the first
(``val_tokens`` long) being validation, as in build-nanogpt. Preparation is resumable: each shard is written
atomically, and ``meta.json`` records after every shard how many documents were consumed and how far into the
document that straddles the boundary, so a re-run continues exactly where the last complete shard ended and
produces byte-identical shards.
"""

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from modeling.tokenization import TiktokenGPT2, tokenizer_info

from ..errors import ConfigError, UserError
from ..ownership import foreign_in_shards, refuse_foreign
from .download import hub_unreachable_reason
from .shards import (
    META_VERSION,
    SHARD_DTYPE,
    file_stamp,
    make_writable_dir,
    read_meta,
    shard_filename,
    write_meta,
    write_shard_atomic,
)

FINEWEB_EDU = "HuggingFaceFW/fineweb-edu"
TEXT_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


@dataclass
class PrepareConfig:
    """What to tokenize and how to shard it (the fields of ``scripts/prepare_data.py``)."""

    output_dir: str = field(metadata={"help": "Folder for the shards and meta.json (created; re-running resumes "
                                              "an interrupted run)."})
    files: list[str] = field(default_factory=list, metadata={
        "help": "Local corpus: .txt, .jsonl/.json (a text field per record) or .parquet files, or folders of them. "
                "When none are given, --dataset is streamed from the Hugging Face Hub."})
    dataset: str = field(default=FINEWEB_EDU, metadata={"help": "Hub dataset streamed when no --files are given."})
    dataset_config: str | None = field(default="sample-10BT", metadata={
        "help": "Configuration of --dataset (FineWeb-Edu: sample-10BT, sample-100BT, ...)."})
    dataset_split: str = field(default="train", metadata={"help": "Split of --dataset."})
    text_field: str = field(default="text", metadata={
        "help": "Field (JSON) or column (parquet, Hub) holding the document text."})
    name: str = field(default="edufineweb", metadata={
        "help": "Shard name prefix: <name>_val_000000.npy, <name>_train_000001.npy, ..."})
    shard_tokens: int = field(default=100_000_000, metadata={"help": "Tokens per shard (build-nanogpt: 100M)."})
    val_tokens: int | None = field(default=None, metadata={
        "help": "Tokens in the validation shard, the first one (default: --shard_tokens)."})
    max_tokens: int | None = field(default=None, metadata={
        "help": "Stop after this many tokens in total (samples, tests)."})
    num_workers: int = field(default=max(1, os.cpu_count() or 1), metadata={
        "help": "Tokenizer threads (tiktoken releases the GIL, so threads tokenize in parallel)."})
    chunk_documents: int = field(default=1024, metadata={
        "help": "At most this many documents are tokenized per batch (one thread-pool call each)."})
    chunk_characters: int = field(default=1 << 20, metadata={
        "help": "A batch also ends once its documents hold this many characters: small batches keep the reader, "
                "the tokenizer threads and the shard writer overlapped, and bound the memory of long documents."})
    skip_bad_lines: bool = field(default=False, metadata={
        "help": "Count and skip malformed JSON lines instead of stopping at the first one."})
    txt_split: str = field(default="file", metadata={
        "help": "How a .txt file becomes documents: file (the whole file), paragraph (split at blank lines), "
                "line (one per line)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        if self.shard_tokens <= 0:
            raise ConfigError(f"shard_tokens must be positive, got {self.shard_tokens}.")
        if self.val_tokens is not None and self.val_tokens <= 0:
            raise ConfigError(f"val_tokens must be positive, got {self.val_tokens}.")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ConfigError(f"max_tokens must be positive, got {self.max_tokens}.")
        if self.chunk_documents <= 0 or self.chunk_characters <= 0:
            raise ConfigError("chunk_documents and chunk_characters must be positive, got "
                             f"{self.chunk_documents} and {self.chunk_characters}.")
        if self.txt_split not in ("file", "paragraph", "line"):
            raise ConfigError(f"txt_split must be file, paragraph or line, got {self.txt_split!r}.")

    def shard_size(self, index: int) -> int:
        return (self.val_tokens or self.shard_tokens) if index == 0 else self.shard_tokens

    def source(self) -> dict:
        """Identifies the input; a resumed run must see the same one."""
        if self.files:
            return {"files": [str(Path(f).resolve()) for f in self.files], "text_field": self.text_field,
                    "txt_split": self.txt_split}
        return {"dataset": self.dataset, "config": self.dataset_config, "split": self.dataset_split,
                "text_field": self.text_field}

    def layout(self) -> dict:
        return {"name": self.name, "shard_tokens": self.shard_tokens, "val_tokens": self.val_tokens or
                self.shard_tokens, "max_tokens": self.max_tokens, "skip_bad_lines": self.skip_bad_lines}


class CorpusError(UserError):
    """Bad input corpus; the message names the file (and line) and what to do."""


# ----------------------------------------------------------------------------------------------- documents
class BadLineCounter:
    def __init__(self, skip: bool):
        self.skip = skip
        self.count = 0

    def bad(self, message: str) -> None:
        if not self.skip:
            raise CorpusError(f"{message}. Fix the line or pass --skip_bad_lines to count and skip such lines.")
        self.count += 1


def _expand_files(paths: list[str]) -> list[Path]:
    files = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CorpusError(f"Input path {path} does not exist.")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not found:
                raise CorpusError(f"Input directory {path} holds no {'/'.join(TEXT_SUFFIXES)} files.")
            files.extend(found)
        elif path.suffix not in TEXT_SUFFIXES:
            raise CorpusError(f"Input file {path} has an unsupported type; use {', '.join(TEXT_SUFFIXES)}.")
        else:
            files.append(path)
    return files


NOT_TEXT_FRACTION = 0.01  # a file with more undecodable characters than this is not UTF-8 text


def read_text_file(path: Path) -> str:
    """A UTF-8 text file. A few undecodable bytes become U+FFFD (with a warning); a file where more than 1% of
    the characters cannot be decoded (binary data, another encoding) is refused rather than trained on."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        first_bad = error.start
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - raw.count("\ufffd".encode())
    fraction = bad / max(1, len(text))
    if fraction > NOT_TEXT_FRACTION:
        raise CorpusError(f"{path} is not UTF-8 text: {100 * fraction:.0f}% of its characters cannot be decoded "
                          f"(first bad byte at offset {first_bad}). Convert it to UTF-8, or remove it from --files.")
    warnings.warn(f"{path}: {bad} undecodable byte sequence(s) (first at offset {first_bad}) replaced by U+FFFD.",
                  stacklevel=2)
    return text


def _iter_txt(path: Path, mode: str) -> Iterator[str]:
    text = read_text_file(path)
    if mode == "file":
        pieces = [text]
    elif mode == "paragraph":
        pieces = text.split("\n\n")
    else:
        pieces = text.splitlines()
    yield from (piece for piece in pieces if piece.strip())


def _iter_json_lines(path: Path, text_field: str, bad: BadLineCounter) -> Iterator[str]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                bad.bad(f"{path}:{number}: not valid UTF-8 (byte {error.start} of the line)")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                bad.bad(f"{path}:{number}: not valid JSON ({error.msg})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                bad.bad(f"{path}:{number}: no string field {text_field!r} (found {keys}); "
                        "choose the field with --text_field")
                continue
            yield record[text_field]


def _iter_json(path: Path, text_field: str, bad: BadLineCounter) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        head = handle.read(1024).lstrip()
    if not head.startswith("["):
        yield from _iter_json_lines(path, text_field, bad)
        return
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}:{error.lineno}: not valid JSON ({error.msg}).")
    for number, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            bad.bad(f"{path}: record {number} has no string field {text_field!r}")
            continue
        yield record[text_field]


def _iter_parquet(path: Path, text_field: str) -> Iterator[str]:
    import datasets

    table = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
    if table.column_names is not None and text_field not in table.column_names:
        raise CorpusError(f"{path}: no column {text_field!r} (columns: {table.column_names}); "
                          "choose it with --text_field.")
    for row in table:
        yield row[text_field]


def iter_local_documents(config: PrepareConfig, bad: BadLineCounter) -> Iterator[str]:
    for path in _expand_files(config.files):
        if path.suffix == ".txt":
            yield from _iter_txt(path, config.txt_split)
        elif path.suffix == ".jsonl":
            yield from _iter_json_lines(path, config.text_field, bad)
        elif path.suffix == ".json":
            yield from _iter_json(path, config.text_field, bad)
        else:
            yield from _iter_parquet(path, config.text_field)


def iter_hub_documents(config: PrepareConfig, start: int) -> Iterator[str]:
    """Stream a Hub dataset (FineWeb-Edu by default); ``start`` documents are skipped server-side."""
    import datasets

    if reason := hub_unreachable_reason():
        raise CorpusError(f"Streaming {config.dataset} ({config.dataset_config}) needs the Hugging Face Hub, but "
                          f"{reason}. Pass local files instead: --files my_corpus/ (.txt, .jsonl/.json with a "
                          "--text_field, .parquet), e.g. FineWeb-Edu parquet files downloaded elsewhere.")

    stream = datasets.load_dataset(config.dataset, name=config.dataset_config, split=config.dataset_split,
                                   streaming=True)
    if start:
        stream = stream.skip(start)
    for row in stream:
        yield row[config.text_field]


def iter_documents(config: PrepareConfig, start: int, bad: BadLineCounter) -> Iterator[str]:
    """The corpus in a fixed order, from document number ``start`` on."""
    if config.files:
        return islice(iter_local_documents(config, bad), start, None)
    return iter_hub_documents(config, start)


# ----------------------------------------------------------------------------------------------- tokenizing
def pack_documents(token_arrays: list[np.ndarray], eot: int) -> tuple[np.ndarray, np.ndarray]:
    """``[EOT, *tokens]`` of each document, concatenated into one shard-dtype array, and where each document ends
    in it (cumulative lengths): one copy per chunk instead of one small array per document."""
    parts = [None] * (2 * len(token_arrays))
    parts[0::2] = [np.array([eot], dtype=np.uint32)] * len(token_arrays)
    parts[1::2] = token_arrays
    # Token ids are < 2**16 (the gpt2 vocabulary), so the cast to uint16 is exact.
    flat = np.concatenate(parts, dtype=SHARD_DTYPE, casting="unsafe")
    ends = np.cumsum(np.fromiter((len(tokens) + 1 for tokens in token_arrays), dtype=np.int64,
                                 count=len(token_arrays)))
    return flat, ends


def batches(documents: Iterable[str], max_documents: int, max_characters: int) -> Iterator[list[str]]:
    """Consecutive documents, ``max_documents`` at most, ending at the first to reach ``max_characters``."""
    batch, characters = [], 0
    for document in documents:
        batch.append(document)
        characters += len(document)
        if len(batch) >= max_documents or characters >= max_characters:
            yield batch
            batch, characters = [], 0
    if batch:
        yield batch


def tokenize_documents(documents: Iterable[str], tokenizer: TiktokenGPT2, chunk: int, workers: int,
                       chunk_characters: int = 1 << 20) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of ``chunk`` documents as ``pack_documents`` returns them, in order. tiktoken releases the GIL, so
    threads parallelise it without pickling tokens between processes; the next chunk is tokenized and packed in
    the background while the main thread reads (parses) the one after and writes shards."""

    def tokenize_and_pack(batch: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return pack_documents(tokenizer.encode_batch_arrays(batch, workers), tokenizer.eot_token_id)

    iterator = batches(documents, chunk, chunk_characters)
    with ThreadPoolExecutor(max_workers=1) as background:
        pending = None
        while True:
            batch = next(iterator, None)
            upcoming = background.submit(tokenize_and_pack, batch) if batch else None
            if pending is not None:
                yield pending.result()
            if upcoming is None:
                return
            pending = upcoming


# ----------------------------------------------------------------------------------------------- shard writer
class ShardWriter:
    """Packs documents into fixed-size shards and records, after each shard, where the input stands."""

    def __init__(self, config: PrepareConfig, out: Path, meta: dict):
        self.config, self.out, self.meta = config, out, meta
        progress = meta["progress"]
        self.index = progress["shard_index"]
        self.documents = progress["documents"]  # documents fully consumed before the current one
        self.doc_offset = progress["doc_offset"]  # tokens of the current document already in earlier shards
        self.total = progress["tokens"]
        self.buffer = np.empty(config.shard_size(self.index), dtype=SHARD_DTYPE)
        self.filled = 0

    def add_chunk(self, flat: np.ndarray, ends: np.ndarray) -> bool:
        """Append a chunk of whole documents (``pack_documents``), the first from ``doc_offset`` on; returns False
        once ``max_tokens`` is reached. Shard boundaries fall anywhere; the progress recorded with each shard says
        how many documents were complete and how far into the straddling one it got, so a resume is exact."""
        position = self.doc_offset
        stop = len(flat)
        if self.config.max_tokens is not None:
            stop = min(stop, position + self.config.max_tokens - self.total)
        while position < stop:
            take = min(stop - position, len(self.buffer) - self.filled)
            self.buffer[self.filled:self.filled + take] = flat[position:position + take]
            self.filled += take
            self.total += take
            position += take
            if self.filled == len(self.buffer):
                complete = int(np.searchsorted(ends, position, side="right"))
                started = int(ends[complete - 1]) if complete else 0
                self.flush(documents=self.documents + complete, doc_offset=position - started)
        complete = int(np.searchsorted(ends, position, side="right"))
        self.documents += complete
        self.doc_offset = position - (int(ends[complete - 1]) if complete else 0)
        return self.config.max_tokens is None or self.total < self.config.max_tokens

    def flush(self, documents: int, doc_offset: int) -> None:
        if self.filled == 0:
            return
        split = "val" if self.index == 0 else "train"
        name = shard_filename(self.config.name, split, self.index)
        write_shard_atomic(self.out / name, self.buffer[: self.filled])
        # The largest id is recorded so that a run can check every shard against its vocabulary at start-up.
        self.meta["shards"].append({"file": name, "split": split, "tokens": int(self.filled),
                                    "max_token_id": int(self.buffer[: self.filled].max()),
                                    "stamp": file_stamp(self.out / name)})
        self.index += 1
        self.meta["progress"] = {"shard_index": self.index, "documents": documents, "doc_offset": doc_offset,
                                 "tokens": self.total}
        write_meta(self.out, self.meta)  # after the rename: a crash in between only redoes one identical shard
        self.buffer = np.empty(self.config.shard_size(self.index), dtype=SHARD_DTYPE)
        self.filled = 0


def check_output_dir(path: str | os.PathLike) -> Path:
    try:
        return make_writable_dir(path)
    except OSError as error:
        raise CorpusError(f"Cannot write to output directory {path} ({error.strerror}); choose another "
                          "--output_dir or fix its permissions.") from error


def input_fingerprints(config: PrepareConfig) -> list[dict]:
    """What identifies the local input files: path, size and a BLAKE2 digest of the contents (a copy of the same
    corpus matches; an edited one does not, even with the same size). Empty for a Hub dataset (named by id,
    configuration and split in ``source``)."""
    if not config.files:
        return []
    prints = []
    for path in _expand_files(config.files):
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        prints.append({"path": str(path.resolve()), "bytes": path.stat().st_size, "blake2b": digest.hexdigest()})
    return prints


def _fresh_meta(config: PrepareConfig, inputs: list[dict]) -> dict:
    return {"version": META_VERSION, "complete": False, "tokenizer": tokenizer_info(), "source": config.source(),
            "inputs": inputs, "layout": config.layout(), "dtype": "uint16", "shards": [], "documents": 0,
            "skipped_lines": 0, "progress": {"shard_index": 0, "documents": 0, "doc_offset": 0, "tokens": 0}}


def _changed_inputs(recorded: list[dict], current: list[dict]) -> list[str]:
    before = {item["path"]: item for item in recorded}
    now = {item["path"]: item for item in current}
    changes = [f"{path} (new)" for path in now if path not in before]
    changes += [f"{path} (gone)" for path in before if path not in now]
    changes += [f"{path} ({before[path]['bytes']:,} -> {now[path]['bytes']:,} bytes)" if
                before[path]["bytes"] != now[path]["bytes"] else f"{path} (contents changed)"
                for path in now if path in before and before[path] != now[path]]
    return changes


def _resume_meta(config: PrepareConfig, out: Path) -> dict:
    inputs = input_fingerprints(config)
    meta = read_meta(out)
    if meta is None:
        if any(out.glob(f"{config.name}_*.npy")):
            raise CorpusError(f"{out} holds shards but no meta.json; use an empty --output_dir.")
        return _fresh_meta(config, inputs)
    if meta.get("source") != config.source() or meta.get("layout") != config.layout():
        raise CorpusError(
            f"{out} holds shards prepared from another source or with other settings "
            f"(source {meta.get('source')}, layout {meta.get('layout')}); choose another --output_dir or delete it."
        )
    # Shards of an older version record no fingerprints: nothing to compare.
    changed = _changed_inputs(meta["inputs"], inputs) if "inputs" in meta else []
    if changed:
        state = "were prepared" if meta.get("complete") else "are being prepared (interrupted)"
        raise CorpusError(
            f"The shards in {out} {state} from input that has changed since: {'; '.join(changed[:5])}"
            f"{' ...' if len(changed) > 5 else ''}. Continuing would mix old and new text. Delete {out} (or choose "
            "another --output_dir) to prepare the new input, or restore the old files.")
    return meta


def prepare(config: PrepareConfig) -> dict:
    """Tokenize and shard the corpus into ``config.output_dir``; resumes an interrupted run. Returns meta."""
    out = check_output_dir(config.output_dir)
    meta = _resume_meta(config, out)
    if meta["complete"]:
        return meta
    # Only shards, their meta.json and our temporary files may share the folder: preparation writes and removes
    # files there, and nothing of anyone else's may be touched.
    refuse_foreign(foreign_in_shards(out), out, "write or remove shards in it",
                   "Prepare into a new or empty --output_dir (e.g. data/<name>).")
    for stale in out.glob("*.tmp"):
        stale.unlink()  # ours: foreign_in_shards accepts only <shard>.tmp and meta.json.tmp
    # Shards past the recorded progress (a crash after a rename, before meta.json) are rewritten identically.
    meta["shards"] = meta["shards"][: meta["progress"]["shard_index"]]

    tokenizer = TiktokenGPT2()
    writer = ShardWriter(config, out, meta)
    bad = BadLineCounter(config.skip_bad_lines)
    documents = iter_documents(config, writer.documents, bad)
    bar = tqdm(total=config.max_tokens, initial=writer.total, unit="tok", unit_scale=True, desc="tokenizing",
               disable=not config.progress, dynamic_ncols=True)
    for flat, ends in tokenize_documents(documents, tokenizer, config.chunk_documents, config.num_workers,
                                         config.chunk_characters):
        before = writer.total
        keep_going = writer.add_chunk(flat, ends)
        bar.update(writer.total - before)
        bar.set_postfix(docs=writer.documents, shards=writer.index, refresh=False)
        if not keep_going:
            break
    bar.close()
    writer.flush(documents=writer.documents, doc_offset=writer.doc_offset)
    return _finish(meta, out, writer, bad, config)


def _finish(meta: dict, out: Path, writer: ShardWriter, bad: BadLineCounter, config: PrepareConfig) -> dict:
    if writer.total == 0:
        where = ", ".join(config.files) if config.files else config.dataset
        raise CorpusError(f"The corpus {where} produced no tokens (no non-empty documents).")
    if not any(shard["split"] == "train" for shard in meta["shards"]):
        raise CorpusError(
            f"The corpus has only {writer.total} tokens, all in the validation shard (val_tokens="
            f"{config.val_tokens or config.shard_tokens}); lower --val_tokens so some are left for training."
        )
    meta["documents"] = writer.documents
    meta["skipped_lines"] = bad.count  # local files are re-read from the start on resume, so this is the total
    meta["tokens"] = {split: sum(s["tokens"] for s in meta["shards"] if s["split"] == split)
                      for split in ("val", "train")}
    meta["complete"] = True
    write_meta(out, meta)
    return meta


__all__ = ["CorpusError", "PrepareConfig", "prepare"]
