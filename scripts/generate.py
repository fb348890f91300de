#!/usr/bin/env python
"""Sample text from a checkpoint with transformers' generate (top-k sampling).

Example:
    python scripts/generate.py runs/gpt2-124m-seed/final --prompt "Hello, I'm a language model," \\
        --num_samples 4 --max_new_tokens 32 --top_k 50 --seed 42
"""

import argparse
import math

import torch

from modeling.tokenization import TiktokenGPT2
from training.cli import HelpFormatter
from training.errors import UserError, script_main
from training.evaluation.checkpoints import load_causal_lm
from training.evaluation.sampling import generate_samples


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="A checkpoint folder (runs/<run>/final) or a GPT-2-family Hub id.")
    parser.add_argument("--prompt", default="Hello, I'm a language model,", help="Text to continue.")
    parser.add_argument("--num_samples", type=int, default=4, help="Independent samples.")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="Tokens generated per sample.")
    parser.add_argument("--top_k", type=int, default=50, help="Sample among the k most likely tokens.")
    parser.add_argument("--temperature", type=float, default=1.0, help="Softmax temperature.")
    parser.add_argument("--seed", type=int, default=42, help="Random seed (same seed, same samples).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda.")
    return parser.parse_args(argv)


def check_device(device: str) -> None:
    """A device this torch build and machine can use, else a clear error (not a CUDA traceback after loading)."""
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise UserError(f"--device {device!r} is not a device name ({error}); use cpu or cuda.") from error
    if kind == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UserError(f"--device {device}: {why}; use --device cpu.")


MAX_SAMPLES = 1024  # one batch of samples in memory, printed: more is a loop of commands, not one


def check_arguments(args, prompt_tokens: int | None = None, context: int | None = None) -> None:
    """Bad values are refused with the option's name, before (counts) or after (context) loading the model."""
    for name in ("num_samples", "max_new_tokens", "top_k"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive (got {getattr(args, name)}).")
    if args.num_samples > MAX_SAMPLES:
        raise UserError(f"--num_samples {args.num_samples}: at most {MAX_SAMPLES:,} (they are generated as one batch "
                        "and printed); run the command again for more.")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UserError(f"--temperature must be a positive number (got {args.temperature}).")
    check_device(args.device)
    if prompt_tokens == 0:
        raise UserError("--prompt is empty; give some text to continue.")
    if context is not None and prompt_tokens + args.max_new_tokens > context:
        raise UserError(f"The prompt ({prompt_tokens} tokens) + --max_new_tokens {args.max_new_tokens} exceed the "
                         f"model's context of {context} tokens; use --max_new_tokens "
                         f"{max(0, context - prompt_tokens)} or less.")


@script_main
def main(argv=None) -> int:
    args = parse(argv)
    tokenizer = TiktokenGPT2()
    check_arguments(args)
    model = load_causal_lm(args.checkpoint, device=args.device)
    context = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    check_arguments(args, len(tokenizer.encode(args.prompt)), context)
    texts = generate_samples(model, tokenizer, args.prompt, args.num_samples, args.max_new_tokens,
                             top_k=args.top_k, seed=args.seed, temperature=args.temperature)
    for i, text in enumerate(texts):
        print(f"> sample {i}: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
