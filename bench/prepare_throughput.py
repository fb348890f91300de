#!/usr/bin/env python
"""Tokens/s of scripts/prepare_data.py's pipeline on the shared corpora with 1 and 2 tokenizer threads, against
tiktoken's own encode_ordinary_batch on the same documents (the ratio is the pipeline's efficiency).

    python bench/prepare_throughput.py --fineweb ../shared/data/fineweb_edu_sample150.jsonl \\
        --shakespeare ../shared/data/tinyshakespeare.txt
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import tiktoken  # noqa: E402

from bench.common import machine, table, timed  # noqa: E402
from training.data.preparation import PrepareConfig, prepare  # noqa: E402


def documents(path: Path, split: str) -> list[str]:
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    text = path.read_text()
    return [p for p in text.split("\n\n") if p.strip()] if split == "paragraph" else [text]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fineweb", type=Path, required=True, help="fineweb_edu_sample150.jsonl")
    parser.add_argument("--shakespeare", type=Path, required=True, help="tinyshakespeare.txt")
    parser.add_argument("--copies", type=int, default=10, help="Repeat each corpus this many times (longer timing).")
    args = parser.parse_args(argv)
    encoding = tiktoken.get_encoding("gpt2")
    rows = []
    for name, path, split in (("fineweb-edu sample (150 docs)", args.fineweb, "file"),
                              ("tinyshakespeare (paragraphs)", args.shakespeare, "paragraph")):
        docs = documents(path, split)
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / ("corpus.jsonl")
            corpus.write_text("\n".join(json.dumps({"text": d}) for d in docs * args.copies) + "\n")
            tokens = sum(len(t) + 1 for t in encoding.encode_ordinary_batch(docs * args.copies))
            for workers in (1, 2):
                baseline = timed(lambda: encoding.encode_ordinary_batch(docs * args.copies, num_threads=workers))
                counter = iter(range(100))

                def run():
                    prepare(PrepareConfig(output_dir=f"{tmp}/out{workers}_{next(counter)}", files=[str(corpus)],
                                          shard_tokens=10_000_000, val_tokens=10_000, num_workers=workers,
                                          progress=False))

                seconds = timed(run)
                rows.append([name, workers, f"{tokens:,}", f"{tokens / seconds:,.0f}", f"{tokens / baseline:,.0f}",
                             f"{baseline / seconds:.2f}"])
    print(f"machine: {machine()}\n")
    print(table(["corpus (x copies)", "threads", "tokens", "prepare tok/s", "tiktoken batch tok/s",
                 "prepare / tiktoken"], rows))


if __name__ == "__main__":
    main()
