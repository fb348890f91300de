import pytest
import tiktoken

from modeling import tokenization
from modeling.tokenization import TiktokenGPT2, TokenizerUnavailableError, check_vocab_fits, save_hf_tokenizer


def test_encode_decode_and_eot():
    tok = TiktokenGPT2()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.eot_token_id == 50256 and tok.vocab_size == 50257
    assert tok.encode_document("Hi") == [50256, *tok.encode("Hi")]
    assert tok.decode(tok.encode("naïve café <|endoftext|>")) == "naïve café <|endoftext|>"
    texts = ["one doc", "another, longer document."]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_hf_tokenizer_folder_matches_tiktoken(tmp_path, shakespeare_path):
    from transformers import AutoTokenizer

    save_hf_tokenizer(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    text = shakespeare_path.read_text()[:30000]
    assert hf(text).input_ids == TiktokenGPT2().encode(text)
    assert hf.eos_token_id == 50256
    assert hf("a<|endoftext|>b").input_ids == [64, 50256, 65]


def test_works_offline_from_the_shipped_files_with_tiktoken_ids(monkeypatch, shakespeare_path):
    from .conftest import data_file

    def local_only(path):
        if "://" in path:
            raise ConnectionError(f"no network: {path}")
        with open(path, "rb") as handle:
            return handle.read()

    text = shakespeare_path.read_text()[:50000]
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr("tiktoken.load.read_file", local_only)  # any download attempt fails
    tokenization.gpt2_encoding.cache_clear()
    try:
        shipped = TiktokenGPT2().encode(text)
    finally:
        tokenization.gpt2_encoding.cache_clear()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(data_file("tiktoken_cache")))
    assert shipped == tiktoken.get_encoding("gpt2").encode_ordinary(text)  # tiktoken's own encoding, from its cache


def test_a_user_cache_that_cannot_load_gives_an_actionable_error(monkeypatch):
    def offline(name):
        raise ConnectionError("no network")

    tokenization.gpt2_encoding.cache_clear()
    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nonexistent/cache")
    try:
        with pytest.raises(TokenizerUnavailableError, match="TIKTOKEN_CACHE_DIR='/nonexistent/cache'.*ship"):
            tokenization.TiktokenGPT2()
    finally:
        tokenization.gpt2_encoding.cache_clear()


def test_vocab_that_does_not_fit_is_rejected():
    check_vocab_fits(50257, 50304)
    with pytest.raises(ValueError, match="vocab_size=1000.*at least 50257"):
        check_vocab_fits(50257, 1000)
