#!/usr/bin/env python
"""Tokenize FineWeb-Edu (default) or local files into uint16 token shards (build-nanogpt layout).

Examples:
    python scripts/prepare_data.py --output_dir data/edu_fineweb10B
    python scripts/prepare_data.py --files input.txt --output_dir data/shakespeare --shard_tokens 100000 \\
        --val_tokens 30000
"""

import sys

from transformers import HfArgumentParser

from training.cli import HelpFormatter
from training.data.preparation import CorpusError, PrepareConfig, prepare
from training.data.shards import ShardError
from training.errors import UserError

INTERRUPTED_EXIT_CODE = 130


def main(argv=None) -> int:
    parser = HfArgumentParser(PrepareConfig, description=__doc__, formatter_class=HelpFormatter)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # unknown options, values refused by PrepareConfig
        print(f"error: {error} (see --help)", file=sys.stderr)
        return 2
    try:
        meta = prepare(config)
    except (CorpusError, ShardError, UserError) as error:  # UserError: e.g. a folder of the user's files
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nInterrupted. The complete shards in {config.output_dir} are kept; re-run the same command to "
              "continue after the last one.", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    tokens = meta["tokens"]
    skipped = f" ({meta['skipped_lines']} bad lines skipped)" if meta["skipped_lines"] else ""
    print(f"{config.output_dir}: {len(meta['shards'])} shards, {tokens['train']:,} train + {tokens['val']:,} val "
          f"tokens from {meta['documents']:,} documents{skipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
