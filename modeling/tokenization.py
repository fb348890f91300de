"""The tiktoken ``gpt2`` encoding, wrapped for this project, and a matching transformers tokenizer folder.

tiktoken downloads its BPE files on first use and caches them in ``TIKTOKEN_CACHE_DIR``; offline machines point that
variable at a folder holding the cached files.
"""

import os
from pathlib import Path

import tiktoken

ENCODING_NAME = "gpt2"
EOT_TOKEN = "<|endoftext|>"
_BPE_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
_BPE_FILES = {  # tiktoken's URL -> the transformers file name it corresponds to
    "encoder.json": "vocab.json",
    "vocab.bpe": "merges.txt",
}


class TokenizerUnavailableError(RuntimeError):
    """The BPE files could not be read from the cache nor downloaded."""


def _offline_hint(error: Exception) -> str:
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    where = f"TIKTOKEN_CACHE_DIR={cache!r} does not hold them" if cache else "TIKTOKEN_CACHE_DIR is not set"
    return (
        f"Could not load the tiktoken '{ENCODING_NAME}' BPE files ({type(error).__name__}: {error}); {where}. "
        "Either connect to the internet once (tiktoken downloads and caches them), or set TIKTOKEN_CACHE_DIR "
        "to a folder with the cached files (e.g. a copy of another machine's cache)."
    )


class TiktokenGPT2:
    """tiktoken ``gpt2`` with the handful of operations training and evaluation need."""

    def __init__(self):
        try:
            self._enc = tiktoken.get_encoding(ENCODING_NAME)
        except Exception as error:  # tiktoken raises requests/urllib/OSError variants when offline
            raise TokenizerUnavailableError(_offline_hint(error)) from error
        self.eot_token_id: int = self._enc.eot_token
        self.vocab_size: int = self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in the text are treated as plain text."""
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def encode_document(self, text: str) -> list[int]:
        """A document as it is stored in shards: the EOT delimiter first, then its tokens."""
        return [self.eot_token_id, *self._enc.encode_ordinary(text)]

    def decode(self, ids) -> str:
        """Text of ``ids``; ids past the tokenizer (a padded vocabulary's extra rows) are dropped."""
        return self._enc.decode([int(i) for i in ids if int(i) < self.vocab_size])


def read_bpe_file(name: str) -> bytes:
    """One of GPT-2's BPE files (``encoder.json`` or ``vocab.bpe``) through tiktoken's cache/download logic."""
    from tiktoken.load import read_file_cached

    try:
        return read_file_cached(_BPE_BASE_URL + name)
    except Exception as error:
        raise TokenizerUnavailableError(_offline_hint(error)) from error


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
    return tokenizer


def check_vocab_fits(tokenizer_vocab_size: int, model_vocab_size: int, what: str = "the model") -> None:
    """Fail early when token ids could index past the embedding table."""
    if tokenizer_vocab_size > model_vocab_size:
        raise ValueError(
            f"The tokenizer produces ids up to {tokenizer_vocab_size - 1}, but {what} has vocab_size="
            f"{model_vocab_size}. Set the model's vocab_size to at least {tokenizer_vocab_size} "
            "(50304 is the padded GPT-2 size)."
        )


def tokenizer_info() -> dict:
    """What is recorded in metadata files about the tokenizer."""
    return {"library": "tiktoken", "encoding": ENCODING_NAME, "eot_token_id": 50256, "vocab_size": 50257}


__all__ = ["TiktokenGPT2", "TokenizerUnavailableError", "check_vocab_fits", "save_hf_tokenizer", "tokenizer_info"]
