#!/usr/bin/env python
"""HellaSwag examples/s and validation tokens/s for a model (default: a tiny random one; --checkpoint for a
real one). On a GPU with a 124M checkpoint and the full 10,042-example file this is the full-pass time.

    python bench/eval_throughput.py --hellaswag ../shared/data/hellaswag_val_subset1000.jsonl --limit 200
"""

import argparse
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import machine, table  # noqa: E402
from modeling import GPTConfig, GPTForCausalLM  # noqa: E402
from modeling.tokenization import TiktokenGPT2  # noqa: E402
from training.data.loaders import ValidationSet  # noqa: E402
from training.data.shards import write_shard_atomic  # noqa: E402
from training.evaluation.checkpoints import load_causal_lm
from training.evaluation.hellaswag import accuracy_metric, evaluate_hellaswag, load_examples  # noqa: E402
from training.evaluation.validation import validation_loss  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hellaswag", required=True, help="HellaSwag .jsonl (the full validation file: 10,042).")
    parser.add_argument("--limit", type=int, default=200, help="Examples timed; 0 = all (the full pass).")
    parser.add_argument("--checkpoint", default=None, help="A checkpoint folder or Hub id (default: random model).")
    parser.add_argument("--random_124m", action="store_true",
                        help="A randomly initialised GPT-2 124M (T=1024): the full-pass time without a download.")
    parser.add_argument("--batch_examples", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--val_tokens", type=int, default=65536)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.checkpoint:
        model, name = load_causal_lm(args.checkpoint, device, dtype), args.checkpoint
    elif args.random_124m:
        model, name = GPTForCausalLM(GPTConfig()).to(device, dtype).eval(), "random GPT-2 124M (T=1024)"
    else:
        model = GPTForCausalLM(GPTConfig(n_layer=4, n_head=4, n_embd=128, n_positions=512)).to(device).eval()
        name = "random 4L/128W (T=512)"
    examples = load_examples(args.hellaswag, args.limit or None)
    tokenizer = TiktokenGPT2()
    accuracy_metric()  # load the metric module once, outside the timing
    rows = []
    for batch in args.batch_examples:
        start = time.perf_counter()
        evaluate_hellaswag(model, examples, tokenizer, device, batch_examples=batch)
        seconds = time.perf_counter() - start
        rows.append([name, f"HellaSwag, {batch} examples/batch", len(examples),
                     f"{len(examples) / seconds:,.1f} ex/s ({seconds:,.1f} s for the pass)"])
    with __import__("tempfile").TemporaryDirectory() as tmp:
        write_shard_atomic(Path(tmp) / "v_val_000000.npy",
                           np.random.default_rng(0).integers(0, 50257, args.val_tokens + 1).astype(np.uint16))
        val = ValidationSet(tmp)
        seq = min(512, model.config.n_positions)
        start = time.perf_counter()
        validation_loss(model, val, 8, seq, device)
        seconds = time.perf_counter() - start
        rows.append([name, f"validation loss, B=8 T={seq}", val.num_tokens(seq), f"{val.num_tokens(seq) / seconds:,.0f} tok/s"])
    print(f"machine: {machine()}\n")
    print(table(["model", "what", "items", "throughput"], rows))


if __name__ == "__main__":
    main()
