"""Shared fixtures: tiny configs and the offline data in ``../shared/data`` (or ``$GPT2_PRETRAIN_TEST_DATA``)."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(os.environ.get("GPT2_PRETRAIN_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))

# The tokenizer's BPE files ship with the project: no TIKTOKEN_CACHE_DIR is needed (one set by the user is honoured).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def data_file(name: str) -> Path:
    path = TEST_DATA / name
    if not path.exists():
        pytest.skip(f"offline test data {path} is missing (set GPT2_PRETRAIN_TEST_DATA to the shared data folder)")
    return path


@pytest.fixture
def tiny_config():
    from modeling import GPTConfig

    return GPTConfig(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=1)


@pytest.fixture
def tiny_model(tiny_config):
    from modeling import GPTForCausalLM

    torch.manual_seed(0)
    return GPTForCausalLM(tiny_config).eval()


@pytest.fixture(scope="session")
def shakespeare_path():
    return data_file("tinyshakespeare.txt")


@pytest.fixture(scope="session")
def fineweb_path():
    return data_file("fineweb_edu_sample150.jsonl")


@pytest.fixture(scope="session")
def hellaswag_path():
    return data_file("hellaswag_val_subset1000.jsonl")


@pytest.fixture(scope="session")
def shakespeare_shards(tmp_path_factory, shakespeare_path):
    """tinyshakespeare as shards: an 8,192-token validation shard and ~330k training tokens."""
    from training.data.preparation import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("shards")
    prepare(PrepareConfig(output_dir=str(out), files=[str(shakespeare_path)], name="shakespeare",
                          shard_tokens=100_000, val_tokens=8_192, progress=False))
    return out
