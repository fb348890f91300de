import json

import pytest
from transformers import AutoConfig

from modeling import GPTConfig


def test_defaults_are_gpt2_124m_with_padded_vocab():
    config = GPTConfig()
    assert (config.vocab_size, config.n_positions, config.n_layer, config.n_head, config.n_embd) == (
        50304, 1024, 12, 12, 768)
    assert config.bias and config.tie_word_embeddings
    assert config.model_type == "nanogpt"


def test_standard_attribute_names_map_to_gpt2_names():
    config = GPTConfig(n_embd=64, n_layer=3, n_head=4, n_positions=128)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.max_position_embeddings) == (64, 3, 4, 128)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_embd": 10, "n_head": 3}, "divisible by n_head"),
        ({"n_layer": 0}, "n_layer must be a positive integer"),
        ({"vocab_size": -5}, "vocab_size must be a positive integer"),
        ({"n_positions": 0}, "n_positions must be a positive integer"),
        ({"n_inner": 0}, "n_inner"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_invalid_values_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


def test_tiny_vocab_is_legal_and_round_trips_through_json(tmp_path):
    config = GPTConfig(vocab_size=7, n_embd=8, n_head=2, n_layer=1, n_positions=4, bos_token_id=0, eos_token_id=0)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "nanogpt"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, GPTConfig) and loaded.vocab_size == 7 and loaded.n_embd == 8
