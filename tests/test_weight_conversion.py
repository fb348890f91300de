import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from modeling import GPTForCausalLM
from modeling.weight_conversion import export_gpt2, from_gpt2, to_gpt2


@pytest.fixture
def hf_gpt2():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


def test_gpt2_to_ours_gives_same_logits_and_loss(hf_gpt2):
    ours = from_gpt2(hf_gpt2, vocab_size=None).eval()
    ids = torch.randint(0, 96, (3, 20))
    torch.testing.assert_close(ours(ids).logits, hf_gpt2(ids).logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours(ids, labels=ids).loss, hf_gpt2(ids, labels=ids).loss, atol=1e-5, rtol=0)
    assert ours.lm_head.weight is ours.transformer.wte.weight


def test_ours_to_gpt2_and_back(hf_gpt2):
    ours = from_gpt2(hf_gpt2, vocab_size=None).eval()
    back = to_gpt2(ours, vocab_size=None).eval()
    ids = torch.randint(0, 96, (2, 12))
    torch.testing.assert_close(back(ids).logits, ours(ids).logits, atol=1e-5, rtol=0)
    for key, value in hf_gpt2.state_dict().items():
        if not key.endswith(".attn.bias"):
            torch.testing.assert_close(back.state_dict()[key], value, msg=key)


def test_vocab_padding_and_unpadding(hf_gpt2):
    padded = from_gpt2(hf_gpt2, vocab_size=128).eval()
    assert padded.config.vocab_size == 128 and padded.transformer.wte.weight.shape == (128, 32)
    ids = torch.randint(0, 96, (2, 10))
    torch.testing.assert_close(padded(ids).logits[..., :96], hf_gpt2(ids).logits, atol=1e-5, rtol=0)
    # padded rows are the mean embedding, not zeros (a zero row would get logit 0, far above typical logits)
    mean = hf_gpt2.transformer.wte.weight.mean(0)
    torch.testing.assert_close(padded.transformer.wte.weight[100], mean)
    unpadded = to_gpt2(padded, vocab_size=96).eval()
    assert unpadded.config.vocab_size == 96
    torch.testing.assert_close(unpadded(ids).logits, hf_gpt2(ids).logits, atol=1e-5, rtol=0)


def test_export_folder_loads_with_plain_transformers(tiny_model, tmp_path):
    export_gpt2(tiny_model, tmp_path / "gpt2", vocab_size=90, with_tokenizer=False)
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    assert loaded.config.vocab_size == 90
    ids = torch.randint(0, 90, (2, 10))
    torch.testing.assert_close(loaded(ids).logits, tiny_model(ids).logits[..., :90], atol=1e-5, rtol=0)


def test_from_gpt2_accepts_a_local_path(hf_gpt2, tmp_path):
    hf_gpt2.save_pretrained(tmp_path / "ref")
    ours = from_gpt2(tmp_path / "ref", vocab_size=None).eval()
    assert isinstance(ours, GPTForCausalLM)
    ids = torch.randint(0, 96, (1, 8))
    torch.testing.assert_close(ours(ids).logits, hf_gpt2(ids).logits, atol=1e-5, rtol=0)
