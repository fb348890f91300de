"""The tiktoken ``gpt2`` encoding, wrapped for this project, and a matching transformers tokenizer folder.

GPT-2's BPE files ship with the project (``gpt2_bpe/``), so tokenization needs no download: the encoding is built
from them with tiktoken's own loader. A user who set ``TIKTOKEN_CACHE_DIR`` gets tiktoken's usual cached
encoding instead (same ids).
"""

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tiktoken

ENCODING_NAME = "gpt2"
EOT_TOKEN = "<|endoftext|>"
EOT_TOKEN_ID = 50256
BPE_DIR = Path(__file__).resolve().parent / "gpt2_bpe"
_BPE_HASHES = {  # the sha256 tiktoken expects for its gpt2 encoding
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
_BPE_FILES = {  # our file -> the transformers file name it corresponds to
    "encoder.json": "vocab.json",
    "vocab.bpe": "merges.txt",
}


class TokenizerUnavailableError(RuntimeError):
    """The BPE files could not be read from the cache nor downloaded."""

    user_error = True  # scripts report it as "error: ..." (training/errors.py)


def _offline_hint(error: Exception) -> str:
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    where = f"TIKTOKEN_CACHE_DIR={cache!r} does not hold them" if cache else "TIKTOKEN_CACHE_DIR is not set"
    return (
        f"Could not load the tiktoken '{ENCODING_NAME}' BPE files ({type(error).__name__}: {error}); {where}. "
        "Unset TIKTOKEN_CACHE_DIR to use the BPE files that ship with this project, connect to the internet "
        "once (tiktoken downloads and caches them), or point it at a folder with the cached files."
    )


class TiktokenGPT2:
    """tiktoken ``gpt2`` with the handful of operations training and evaluation need."""

    def __init__(self):
        self._enc = gpt2_encoding()
        self.eot_token_id: int = self._enc.eot_token
        self.vocab_size: int = self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in the text are treated as plain text."""
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def encode_batch_arrays(self, texts: list[str], num_threads: int = 8) -> list[np.ndarray]:
        """``encode_batch`` as uint32 arrays, the same ids, faster for many short texts: tiktoken fills a buffer
        (no Python int per token, and the GIL is released while it encodes), and each thread takes a contiguous
        slice of the texts instead of one executor task per text."""
        # disallowed_special=() and no allowed specials: "<|endoftext|>" in a text is plain text, as encode_ordinary
        encode = functools.partial(self._enc.encode_to_numpy, disallowed_special=())
        if num_threads <= 1 or len(texts) < 2:
            return [encode(text) for text in texts]
        pieces = min(len(texts), 4 * num_threads)  # a few slices per thread balance documents of unequal length
        bounds = [len(texts) * i // pieces for i in range(pieces + 1)]
        with ThreadPoolExecutor(num_threads) as pool:
            slices = pool.map(lambda i: [encode(text) for text in texts[bounds[i]:bounds[i + 1]]], range(pieces))
            return [array for piece in slices for array in piece]

    def encode_document(self, text: str) -> list[int]:
        """A document as it is stored in shards: the EOT delimiter first, then its tokens."""
        return [self.eot_token_id, *self._enc.encode_ordinary(text)]

    def decode(self, ids) -> str:
        """Text of ``ids``; ids past the tokenizer (a padded vocabulary's extra rows) are dropped."""
        return self._enc.decode([int(i) for i in ids if int(i) < self.vocab_size])


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's ``gpt2`` encoding: from ``TIKTOKEN_CACHE_DIR`` when the user set it, else from the shipped files."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        try:
            return tiktoken.get_encoding(ENCODING_NAME)
        except Exception as error:  # tiktoken raises requests/urllib/OSError variants when offline
            raise TokenizerUnavailableError(_offline_hint(error)) from error
    return shipped_encoding()


def shipped_encoding() -> tiktoken.Encoding:
    """The ``gpt2`` encoding built by tiktoken's own loader from the BPE files in ``gpt2_bpe/`` (hash-checked)."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # tiktoken's switch for "read the files, cache nothing"
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(BPE_DIR / "vocab.bpe"), encoder_json_file=str(BPE_DIR / "encoder.json"),
            vocab_bpe_hash=_BPE_HASHES["vocab.bpe"], encoder_json_hash=_BPE_HASHES["encoder.json"])
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR")
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
    return tiktoken.Encoding(name=ENCODING_NAME, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={EOT_TOKEN: EOT_TOKEN_ID}, explicit_n_vocab=50257)


def read_bpe_file(name: str) -> bytes:
    """One of GPT-2's BPE files (``encoder.json`` or ``vocab.bpe``), as shipped with the project."""
    return (BPE_DIR / name).read_bytes()


def save_hf_tokenizer(folder: str | os.PathLike, model_max_length: int = 1024):
    """Write a transformers GPT-2 tokenizer whose ids equal tiktoken's into ``folder`` and return it.

    Built from the same BPE files as tiktoken (``encoder.json`` -> ``vocab.json``, ``vocab.bpe`` -> ``merges.txt``),
    so it works offline wherever tiktoken does. It lets ``AutoTokenizer``, ``pipeline`` and lm-evaluation-harness
    use a checkpoint folder directly.
    """
    from transformers import GPT2TokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in _BPE_FILES.items():
        (folder / target).write_bytes(read_bpe_file(source))
    tokenizer = GPT2TokenizerFast.from_pretrained(
        folder, bos_token=EOT_TOKEN, eos_token=EOT_TOKEN, unk_token=EOT_TOKEN, model_max_length=model_max_length
    )
    tokenizer.save_pretrained(folder)
    # transformers records the loading option local_files_only (true under HF_HUB_OFFLINE) in tokenizer_config.json:
    # a saved folder must not depend on the environment it was written in.
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    if config.pop("local_files_only", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return tokenizer


def check_vocab_fits(tokenizer_vocab_size: int, model_vocab_size: int, what: str = "the model") -> None:
    """Fail early when token ids could index past the embedding table."""
    if tokenizer_vocab_size > model_vocab_size:
        from .configuration_gpt import ModelSettingError

        raise ModelSettingError(
            f"The tokenizer produces ids up to {tokenizer_vocab_size - 1}, but {what} has vocab_size="
            f"{model_vocab_size}. Set the model's vocab_size to at least {tokenizer_vocab_size} "
            "(50304 is the padded GPT-2 size)."
        )


def tokenizer_info() -> dict:
    """What is recorded in metadata files about the tokenizer."""
    return {"library": "tiktoken", "encoding": ENCODING_NAME, "eot_token_id": EOT_TOKEN_ID, "vocab_size": 50257}


__all__ = ["TiktokenGPT2", "TokenizerUnavailableError", "check_vocab_fits", "save_hf_tokenizer", "tokenizer_info"]
