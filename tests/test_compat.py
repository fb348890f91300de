"""A checkpoint written by an earlier version resumes bit for bit: the fixture is the step-2 checkpoint of a 4-step run
made by main before the component redesign (``tests/fixtures/checkpoint_d4b9c9f/expected.json`` says how); resumed by
this version with the same command line, it must end with exactly the weights that run ended with."""

import hashlib
import json
import shutil

import torch
from safetensors.torch import load_file

from modeling.tokenization import save_hf_tokenizer
from training.data.preparation import PrepareConfig, prepare

from .conftest import REPO_ROOT
from .test_errors import run_main

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "checkpoint_d4b9c9f"


def weights_digest(path) -> str:
    weights = load_file(str(path))
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def regenerate_tokenizer_files(model_dir) -> None:
    """The tokenizer's large files are the same bytes for every run (made from the BPE files in modeling/): they are
    written back here rather than kept in the fixture. Its small tokenizer_config.json is kept as the run wrote it."""
    made = model_dir.parent / "made"
    save_hf_tokenizer(made, model_max_length=16)
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        shutil.copy2(made / name, model_dir / name)
    shutil.rmtree(made)


def test_a_checkpoint_of_the_previous_version_resumes_bitwise(tmp_path, shakespeare_path, capsys):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    checkpoint = run / "checkpoints" / "step_0000002"
    regenerate_tokenizer_files(checkpoint / "model")
    shards = expected["shard_settings"]
    prepare(PrepareConfig(output_dir=str(tmp_path / "shards"), files=[str(shakespeare_path)],
                          shard_tokens=shards["shard_tokens"], val_tokens=shards["val_tokens"], name=shards["name"],
                          progress=False))
    code, err = run_main("pretrain", [*expected["argv"], "--data", str(tmp_path / "shards"), "--output_dir", str(run),
                                      "--resume_from_checkpoint", "latest"], capsys)
    assert code == 0, err
    assert "changed settings" not in capsys.readouterr().out
    state = json.loads((run / "final" / "training_state.json").read_text())
    assert state["global_step"] == expected["final_global_step"]
    assert weights_digest(run / "final" / "model.safetensors") == expected["final_weights_sha256"]
    assert state["last_val_loss"] == expected["final_last_val_loss"]
