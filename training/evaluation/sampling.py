"""Text samples from ``generate``, with their own RNG so sampling never disturbs training."""

import torch

from modeling.tokenization import TiktokenGPT2


@torch.no_grad()
def generate_samples(model, tokenizer: TiktokenGPT2, prompt: str, num_samples: int = 4, max_new_tokens: int = 32,
                     top_k: int = 50, seed: int = 42, temperature: float = 1.0) -> list[str]:
    """Top-k samples continuing ``prompt``. Uses its own seeded RNG, so sampling during training leaves the
    training RNG (and therefore an exact resume) untouched."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)] * num_samples, device=device)
    vocab = model.config.vocab_size
    # Padded ids (50257..50303) have no text; never sample them.
    suppress = list(range(tokenizer.vocab_size, vocab)) or None
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=top_k,
                             temperature=temperature, max_new_tokens=max_new_tokens, suppress_tokens=suppress,
                             eos_token_id=tokenizer.eot_token_id, pad_token_id=tokenizer.eot_token_id)
    model.train(was_training)
    return [tokenizer.decode(until_end_of_text(row.tolist(), ids.shape[1], tokenizer.eot_token_id)) for row in out]


def until_end_of_text(row: list[int], prompt_length: int, eot: int) -> list[int]:
    """The prompt and what follows it up to the first end-of-text token: a sample is one document, and rows that
    finished early are padded with that token."""
    generated = row[prompt_length:]
    return row[:prompt_length] + (generated[: generated.index(eot)] if eot in generated else generated)
