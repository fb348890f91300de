import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import GPT2LMHeadModel

from modeling import GPTForCausalLM
from training.hub import upload as hub_upload
from training.hub.callback import HubPushCallback
from training.hub.staging import stage_upload
from training.hub.upload import HubError, push_folder
from training.trainer.trainer import Trainer

from .helpers import REPO, tiny_run_config

FAKE_TOKEN = "hf_fakeTokenThatMustNeverLeak0123456789"


class RecordingApi:
    """Stands in for HfApi: records the calls that would go over the network."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def create_repo(self, repo_id, **kwargs):
        if self.fail:
            raise self.fail
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(str(p.relative_to(kwargs["folder_path"])) for p in
                       __import__("pathlib").Path(kwargs["folder_path"]).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return "commit"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shakespeare_shards):
    root = tmp_path_factory.mktemp("hubrun")
    config = tiny_run_config(root / "run", shakespeare_shards, max_steps=4, eval_every=2, save_every=2,
                             callbacks=["grad_norm", "layer_ratios"], diagnostics_every=2)
    trainer = Trainer(config)
    trainer.train()
    trainer.close()
    evaluation = {"models": [{"name": "run/final", "path": str(root / "run" / "final"), "val_loss": 9.87654,
                              "perplexity": 19434.1, "hellaswag_acc": 0.26, "hellaswag_acc_norm": 0.27,
                              "val_tokens": 4096, "hellaswag_examples": 100},
                             {"name": "gpt2 (reference)", "path": "gpt2", "val_loss": 3.2924, "perplexity": 26.9,
                              "hellaswag_acc": 0.2859, "hellaswag_acc_norm": 0.2955}]}
    evaluation["reference"] = evaluation["models"][1]
    staged = stage_upload(root / "run" / "final", root / "staged", "me/tiny-gpt", evaluation=evaluation)
    return root, staged, evaluation


def test_upload_folder_is_complete(trained_run):
    _, staged, _ = trained_run
    for name in ("model.safetensors", "config.json", "generation_config.json", "modeling_gpt.py",
                 "configuration_gpt.py", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_info.json",
                 "run_config.yaml", "training_state.json", "README.md", "plots/lossGraph.png",
                 "plots/update_ratio.png", "gpt2-export/model.safetensors", "gpt2-export/tokenizer.json"):
        assert (staged / name).exists(), name
    assert list((staged / "runs").rglob("events.out.tfevents.*"))
    assert "auto_map" in json.loads((staged / "config.json").read_text())


LOAD_HIDDEN = textwrap.dedent(
    """
    import sys, json, torch
    sys.modules["modeling"] = None
    sys.modules["training"] = None
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    folder = sys.argv[1]
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tokenizer("Hello, I'm a language model,", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    generator = pipeline("text-generation", model=folder, trust_remote_code=True)
    text = generator("Hello, I'm a language model,", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    print(json.dumps({"tokens": out[0].tolist(), "pipeline": text}))
    """
)


def test_staged_folder_loads_without_the_project_and_generates_the_same(trained_run):
    root, staged, _ = trained_run
    original = GPTForCausalLM.from_pretrained(root / "run" / "final").eval()
    from modeling.tokenization import TiktokenGPT2

    tok = TiktokenGPT2()
    prompt = torch.tensor([tok.encode("Hello, I'm a language model,")])
    expected = original.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=50256)
    result = subprocess.run([sys.executable, "-c", LOAD_HIDDEN, str(staged)], capture_output=True, text=True,
                            cwd=staged.parent, timeout=300, env={**os.environ, "HF_MODULES_CACHE": str(root / "m")})
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["tokens"] == expected[0].tolist()
    assert payload["pipeline"] == tok.decode(expected[0].tolist())


def test_gpt2_export_loads_with_plain_transformers(trained_run):
    root, staged, _ = trained_run
    original = GPTForCausalLM.from_pretrained(root / "run" / "final").eval()
    plain = GPT2LMHeadModel.from_pretrained(staged / "gpt2-export").eval()
    assert plain.config.vocab_size == 50257
    ids = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, original(ids).logits[..., :50257], atol=1e-5, rtol=1e-5)


def test_model_card_parses_and_its_numbers_come_from_the_run(trained_run):
    root, staged, evaluation = trained_run
    card = ModelCard.load(staged / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"loss": round(evaluation["models"][0]["val_loss"], 4),
                       "acc_norm": round(evaluation["models"][0]["hellaswag_acc_norm"], 4)}
    state = json.loads((root / "run" / "final" / "training_state.json").read_text())
    assert f"{state['tokens_seen']:,}" in card.text and f"{state['parameters']:,}" in card.text
    assert "3.2924" in card.text and "gpt2 (reference)" in card.text  # the comparison with the reference
    assert "gpt2-export/" in card.text and "trust_remote_code=True" in card.text
    assert "Intended use and limitations" in card.text


def test_upload_call_sequence_with_an_injected_api(trained_run, capsys):
    _, staged, _ = trained_run
    api = RecordingApi()
    push_folder(staged, "me/tiny-gpt", private=True, revision="step_0000004", api=api, token=FAKE_TOKEN)
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][2] == {"private": True, "exist_ok": True, "repo_type": "model"}
    upload = api.calls[2][2]
    assert upload["revision"] == "step_0000004" and "README.md" in upload["files"]
    for path in staged.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    assert FAKE_TOKEN not in capsys.readouterr().out


def test_missing_token_fails_before_any_work(tmp_path, monkeypatch, trained_run):
    monkeypatch.setattr(hub_upload, "get_token", lambda: None)
    with pytest.raises(HubError, match="No Hugging Face token.*HF_TOKEN"):
        HubPushCallback("me/x")
    root, _, _ = trained_run
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env["HF_HOME"] = str(tmp_path / "hf")  # no stored token either
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "push_to_hub.py"), str(root / "run" / "final"),
                             "--repo_id", "me/x", "--staging_dir", str(tmp_path / "stage")], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 2 and "No Hugging Face token" in result.stderr
    assert not (tmp_path / "stage").exists()  # nothing was staged


def test_offline_upload_error_is_clear(trained_run):
    _, staged, _ = trained_run
    with pytest.raises(HubError, match="Could not reach the Hugging Face Hub.*retry") as error:
        push_folder(staged, "me/x", api=RecordingApi(fail=ConnectionError("no route")), token=FAKE_TOKEN)
    assert FAKE_TOKEN not in str(error.value)


def test_training_pushes_checkpoints_and_the_final_model(tmp_path, shakespeare_shards):
    api = RecordingApi()
    pusher = HubPushCallback("me/run", push_checkpoints=True, api=api, token=FAKE_TOKEN)
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2)
    trainer = Trainer(config, callbacks=[pusher])
    trainer.train()
    trainer.close()
    uploads = [c[2] for c in api.calls if c[0] == "upload_folder"]
    assert [u["revision"] for u in uploads] == ["step_0000002", "step_0000004", None]
    assert uploads[0]["run_as_future"] is True and uploads[-1]["run_as_future"] is False
    assert "gpt2-export/model.safetensors" in uploads[-1]["files"] and "README.md" in uploads[-1]["files"]


class ConnectError(Exception):
    """Like httpx.ConnectError: a network failure that is neither an OSError nor a ConnectionError."""


class FlakyApi(RecordingApi):
    """Branch pushes (checkpoints) fail with a network error that is not an OSError; main pushes may fail too."""

    def __init__(self, fail_final=False):
        super().__init__()
        self.fail_final = fail_final

    def create_branch(self, repo_id, **kwargs):
        raise ConnectError("[Errno -3] Temporary failure in name resolution")

    def upload_folder(self, **kwargs):
        if self.fail_final and kwargs.get("revision") is None:
            raise RuntimeError("Hub answered 500")
        return super().upload_folder(**kwargs)


def test_a_failing_checkpoint_push_never_stops_training(tmp_path, shakespeare_shards):
    api = FlakyApi()
    pusher = HubPushCallback("me/run", push_checkpoints=True, api=api, token=FAKE_TOKEN)
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2), callbacks=[pusher])
    with pytest.warns(UserWarning, match="step-2 checkpoint to me/run failed.*ConnectError.*training continues"):
        trainer.train()
    trainer.close()
    assert trainer.state.global_step == 4 and (tmp_path / "final" / "model.safetensors").exists()
    assert pusher.failed_steps == [2, 4]
    assert [c[2]["revision"] for c in api.calls if c[0] == "upload_folder"] == [None]  # the final push went through


def test_a_failing_final_push_says_the_model_is_safe_and_how_to_retry(tmp_path, shakespeare_shards):
    pusher = HubPushCallback("me/run", api=FlakyApi(fail_final=True), token=FAKE_TOKEN)
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2), callbacks=[pusher])
    with pytest.raises(HubError, match=r"final model is saved in .*final.*push_to_hub.py") as error:
        trainer.train()
    trainer.close()
    assert FAKE_TOKEN not in str(error.value)
    assert (tmp_path / "final" / "model.safetensors").exists()


def test_card_names_the_data_without_local_paths(trained_run):
    root, staged, _ = trained_run
    card = (staged / "README.md").read_text()
    assert str(root) not in card and "/tmp" not in card
    # The run trained on tiny shakespeare: the card names that corpus (from its meta.json), not FineWeb-Edu.
    assert "fineweb" not in card.lower() and "local corpus tinyshakespeare.txt" in card
    assert ModelCard(card).data.datasets is None


def test_the_card_says_what_muon_and_mup_do_to_the_learning_rate_row():
    """The learning-rate row is the schedule's; under μP the hidden matrices trained at a fraction of it, and under
    Muon at its own rate: a card that says only "learning rate 0.003" would misreport both."""
    from training.hub.staging import _optimizer_rows

    model = {"n_embd": 256, "parametrization": "mup", "mup_base_width": 64}
    assert _optimizer_rows({"n_embd": 256}, {"optimizer": "adamw"}) == []
    (row,) = _optimizer_rows(model, {"optimizer": "adamw"})
    assert "base width 64 (m = 4)" in row and "x 1/m, weight decay x m" in row
    muon, mup = _optimizer_rows(model, {"optimizer": "muon", "max_lr": 1e-3, "muon_lr": 0.02, "muon_momentum": 0.95})
    assert "lr 0.02" in muon and "1/sqrt(m)" in mup


def test_card_names_a_hub_dataset_when_the_shards_came_from_one(tmp_path):
    import yaml

    from training.hub.staging import dataset_of

    (tmp_path / "meta.json").write_text(json.dumps({"source": {"dataset": "HuggingFaceFW/fineweb-edu",
                                                               "config": "sample-10BT"}}))
    assert dataset_of(yaml.safe_load(f"data: {{data: {tmp_path}}}")) == ("HuggingFaceFW/fineweb-edu",
                                                                          "HuggingFaceFW/fineweb-edu (sample-10BT)")
    assert dataset_of({"data": {"data": str(tmp_path / "elsewhere" / "shards")}}) == (None, "shards")


# ----------------------------------------------------------------------------------------------- hostile networks
def _push(trained_run, monkeypatch, capsys, endpoint, *extra) -> tuple[int, str]:
    """scripts/push_to_hub.py, in this process, against ``endpoint`` (online mode, a fake token)."""
    from huggingface_hub import constants

    from .test_errors import run_main

    root, _, _ = trained_run
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return run_main("push_to_hub", [root / "run" / "final", "--repo_id", "me/x", *extra], capsys)


def test_an_unreachable_hub_is_a_clear_error_naming_the_endpoint(trained_run, monkeypatch, capsys):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, err = _push(trained_run, monkeypatch, capsys, f"http://127.0.0.1:{port}", "--timeout", "5")
    assert code == 2 and f"Could not reach the Hugging Face Hub at http://127.0.0.1:{port}" in err
    assert FAKE_TOKEN not in err


def test_a_server_that_never_answers_times_out(trained_run, monkeypatch, capsys):
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept_and_stay_silent():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    started = time.monotonic()
    try:
        code, err = _push(trained_run, monkeypatch, capsys, f"http://127.0.0.1:{server.getsockname()[1]}",
                          "--timeout", "1")
    finally:
        server.close()
        for connection in held:
            connection.close()
    assert code == 2 and "Could not reach the Hugging Face Hub" in err and "at most 1 s" in err
    assert time.monotonic() - started < 120


def test_a_malformed_repo_id_is_refused_before_staging(trained_run, tmp_path, capsys):
    from .test_errors import run_main

    root, _, _ = trained_run
    code, err = run_main("push_to_hub", [root / "run" / "final", "--repo_id", "not a repo id!!", "--dry_run",
                                         "--staging_dir", tmp_path / "t"], capsys)
    assert code == 2 and "not a valid Hub repository id" in err
    assert not (tmp_path / "t").exists()
    with pytest.raises(HubError, match="not a valid Hub repository id"):
        HubPushCallback("not a repo id!!", token=FAKE_TOKEN)


def test_staging_keeps_out_the_users_notes_and_refuses_a_file_added_inside_it(tmp_path, trained_run):
    """Only what the analysis wrote is staged (a private notes file beside it is not); a file the user later added
    inside plots/ stops a re-staging, untouched."""
    import shutil

    from training.errors import FolderNotOwned

    run = tmp_path / "run"
    shutil.copytree(trained_run[0] / "run", run)
    (run / "analysis").mkdir(exist_ok=True)
    (run / "analysis" / "private_notes.md").write_text("not for the Hub\n")
    staged = stage_upload(run / "final", tmp_path / "stage", "me/model", with_gpt2_export=False)
    assert not list(staged.rglob("private_notes.md")) and list((staged / "plots").glob("*.png"))
    mine = staged / "plots" / "my_annotated_loss.png"
    mine.write_bytes(b"mine")
    with pytest.raises(FolderNotOwned, match="my_annotated_loss.png"):
        stage_upload(run / "final", tmp_path / "stage", "me/model", with_gpt2_export=False)
    assert mine.read_bytes() == b"mine"
