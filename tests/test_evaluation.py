import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from modeling import GPTConfig, GPTForCausalLM
from modeling.tokenization import TiktokenGPT2, save_hf_tokenizer
from training.data.loaders import ValidationSet
from training.data.preparation import PrepareConfig, prepare
from training.evaluation.checkpoints import CheckpointError, load_causal_lm
from training.evaluation.comparison import record_reference
from training.evaluation.hellaswag import (
    Example,
    HellaSwagError,
    ending_losses,
    evaluate_hellaswag,
    load_examples,
    render,
)
from training.evaluation.validation import validation_loss

from .helpers import ACCELERATE_LAUNCH, REPO, read_scalars


@pytest.fixture(scope="module")
def fineweb_shards(tmp_path_factory, fineweb_path):
    out = tmp_path_factory.mktemp("fw")
    prepare(PrepareConfig(output_dir=str(out), files=[str(fineweb_path)], shard_tokens=50_000, val_tokens=6_000,
                          progress=False))
    return out


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A tiny model of ours and a tiny transformers GPT2LMHeadModel standing in for the gpt2 reference."""
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    ours = GPTForCausalLM(GPTConfig(n_layer=2, n_embd=32, n_head=4, n_positions=64)).eval()
    ours.save_pretrained(root / "ours")
    (root / "ours" / "training_state.json").write_text(json.dumps({"tokens_seen": 12345}))
    reference = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64)).eval()
    reference.save_pretrained(root / "reference")
    return root, ours, reference


def test_validation_loss_equals_direct_computation(fineweb_shards, two_checkpoints):
    _, ours, _ = two_checkpoints
    val = ValidationSet(fineweb_shards, max_tokens=1000)
    result = validation_loss(ours, val, 4, 32, torch.device("cpu"), max_tokens=1000)
    n = (1000 // 32) * 32
    with torch.no_grad():
        logits = ours(val.tokens[:n].view(-1, 32)).logits
    direct = F.cross_entropy(logits.reshape(-1, logits.size(-1)), val.tokens[1:n + 1]).item()
    assert result["eval_loss"] == pytest.approx(direct, abs=1e-5) and result["eval_tokens"] == n


def _run_eval(args, launcher=None):
    command = (launcher or [sys.executable]) + [str(REPO / "scripts" / "evaluate_checkpoints.py"), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    return result


def test_evaluate_script_compares_checkpoints_identically_on_one_and_two_processes(
        tmp_path, fineweb_shards, two_checkpoints, hellaswag_path):
    root, ours, reference = two_checkpoints
    common = [root / "ours", "--reference", root / "reference", "--data", fineweb_shards, "--val_tokens", 2000,
              "--seq_len", 32, "--batch_size", 4, "--hellaswag", hellaswag_path, "--limit", 12]
    one = _run_eval(common + ["--output", tmp_path / "one.json"])
    assert one.returncode == 0, one.stderr[-3000:]
    assert "ours" in one.stdout and "(reference)" in one.stdout and "acc_norm" in one.stdout
    two = _run_eval(common + ["--output", tmp_path / "two.json"],
                    launcher=[*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                              "--mixed_precision", "no", "--dynamo_backend", "no"])
    assert two.returncode == 0, two.stderr[-3000:]
    first = json.loads((tmp_path / "one.json").read_text())
    second = json.loads((tmp_path / "two.json").read_text())
    val = ValidationSet(fineweb_shards, max_tokens=2000)
    examples = load_examples(hellaswag_path, 12)
    for row, model in zip(first["models"], (ours, reference)):
        expected = validation_loss(model, val, 4, 32, torch.device("cpu"), max_tokens=2000)
        assert row["val_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
        hs = evaluate_hellaswag(model, examples, TiktokenGPT2(), "cpu")
        assert (row["hellaswag_acc"], row["hellaswag_acc_norm"]) == (hs["acc"], hs["acc_norm"])
    assert first["models"][0]["tokens_trained"] == 12345
    assert first["models"][1]["parameters"] == sum(p.numel() for p in reference.parameters())
    for a, b in zip(first["models"], second["models"]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
        assert a["val_tokens"] == b["val_tokens"] and a["hellaswag_acc_norm"] == b["hellaswag_acc_norm"]


def _memorize(model, texts, steps=80):
    tok = TiktokenGPT2()
    rows = [tok.encode(t) for t in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = sum(model(torch.tensor([r[:-1]]), shift_labels=torch.tensor([r[1:]])).loss for r in rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


HAND_BUILT = [
    Example("The cat sat on the", ["mat and purred softly.", "moon with a telescope.", "ocean of warm soup.",
                                   "river made of glass."], 0),
    Example("She opened the door and", ["flew to the sun.", "became a teapot.", "walked into the kitchen.",
                                        "dissolved in rain."], 2),
    Example("To bake bread you need", ["a rocket engine.", "loud music only.", "three elephants.",
                                       "flour, water and yeast."], 3),
]


def test_hellaswag_prefers_endings_the_model_was_trained_on():
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(n_layer=2, n_embd=64, n_head=4, n_positions=64))
    _memorize(model, [e.ctx + " " + e.endings[e.label] for e in HAND_BUILT])
    result = evaluate_hellaswag(model, HAND_BUILT, TiktokenGPT2(), "cpu", batch_examples=2)
    assert result == {"acc": 1.0, "acc_norm": 1.0, "examples": 3}


def test_batched_ending_losses_equal_a_direct_per_ending_computation(two_checkpoints, hellaswag_path):
    _, ours, _ = two_checkpoints
    tok = TiktokenGPT2()
    examples = load_examples(hellaswag_path, 3)
    rows, starts = [], []
    for example in examples:
        r, s = render(example, tok, 64)
        rows += r
        starts += s
    summed, mean = ending_losses(ours, rows, starts, "cpu")
    for i, (row, start) in enumerate(zip(rows, starts)):
        with torch.no_grad():
            logits = ours(torch.tensor([row])).logits[0]
        per_token = F.cross_entropy(logits[start - 1:-1], torch.tensor(row[start:]), reduction="none")
        assert summed[i].item() == pytest.approx(per_token.sum().item(), rel=1e-5)
        assert mean[i].item() == pytest.approx(per_token.mean().item(), rel=1e-5)


def test_malformed_hellaswag_lines_are_reported_with_line_numbers(tmp_path, hellaswag_path):
    lines = hellaswag_path.read_text().splitlines()[:3]
    cases = {"not json": "not valid JSON", json.dumps({"ctx": "x", "label": 1}): "missing field",
             json.dumps({"ctx": "x", "label": 1, "endings": ["a", "b"]}): "4 strings",
             json.dumps({"ctx": "x", "label": 7, "endings": ["a"] * 4}): "'label' must be 0..3"}
    for bad, message in cases.items():
        path = tmp_path / "hs.jsonl"
        path.write_text("\n".join(lines[:2] + [bad] + lines[2:]) + "\n")
        with pytest.raises(HellaSwagError, match=rf"hs.jsonl:3: .*{message}"):
            load_examples(path)
    with pytest.raises(HellaSwagError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")


def test_bad_checkpoints_give_clear_errors(tmp_path, two_checkpoints):
    root, _, _ = two_checkpoints
    with pytest.raises(CheckpointError, match="missing-ckpt does not exist"):
        load_causal_lm(str(tmp_path / "missing-ckpt"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((root / "ours" / "config.json").read_text())
    for name in ("modeling_gpt.py", "configuration_gpt.py"):
        (broken / name).write_text((root / "ours" / name).read_text())
    weights = (root / "ours" / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match=r"broken: could not read the weights.*truncated"):
        load_causal_lm(str(broken))
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(CheckpointError, match=r"bert holds a 'bert' model"):
        load_causal_lm(str(other))
    result = _run_eval([tmp_path / "missing-ckpt", "--data", tmp_path, "--skip_hellaswag"])
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_reference_is_recorded_into_a_run(tmp_path):
    record_reference(tmp_path, {"name": "gpt2", "path": "gpt2", "val_loss": 3.2924, "hellaswag_acc_norm": 0.2955})
    scalars = read_scalars(tmp_path)
    assert scalars["reference/val_loss"][0] == pytest.approx(3.2924)
    assert json.loads((tmp_path / "reference_eval.json").read_text())["val_loss"] == 3.2924


def test_generate_script_is_reproducible(tmp_path, two_checkpoints):
    root, _, _ = two_checkpoints
    args = [sys.executable, str(REPO / "scripts" / "generate.py"), str(root / "ours"), "--num_samples", "2",
            "--max_new_tokens", "5", "--seed", "7", "--prompt", "Hello, I'm a language model,"]
    first = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    second = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    samples = [line for line in first.stdout.splitlines() if line.startswith("> sample")]
    assert len(samples) == 2 and all("Hello, I'm a language model," in s for s in samples)
    assert first.stdout == second.stdout


def test_checkpoint_folder_works_with_lm_evaluation_harness(tmp_path, two_checkpoints):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    root, ours, _ = two_checkpoints
    folder = tmp_path / "ckpt"
    ours.save_pretrained(folder)
    save_hf_tokenizer(folder, model_max_length=64)
    lm = HFLM(pretrained=str(folder), trust_remote_code=True, batch_size=2, device="cpu")
    assert lm.max_length == 64 and lm.eot_token_id == 50256
    pairs = [("The king said", " hello there"), ("To be or not to be, that is", " the question"),
             ("A", " b")]
    results = lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)])
    tok = TiktokenGPT2()
    for (context, continuation), (logprob, _) in zip(pairs, results):
        ids, cont = tok.encode(context + continuation), tok.encode(continuation)
        with torch.no_grad():
            logits = ours(torch.tensor([ids])).logits[0].log_softmax(-1)
        expected = sum(logits[len(ids) - len(cont) - 1 + i, t].item() for i, t in enumerate(cont))
        assert logprob == pytest.approx(expected, abs=1e-4)
    prompts = ["The king", "To be or not to be, that is the"]  # different lengths: left padding in one batch
    outputs = lm.generate_until([Instance("generate_until", {}, (p, {"until": ["\n"], "max_gen_toks": 6,
                                                                     "do_sample": False}), i)
                                 for i, p in enumerate(prompts)])
    for prompt, text in zip(prompts, outputs):
        alone = ours.generate(torch.tensor([tok.encode(prompt)]), max_new_tokens=6, do_sample=False,
                              pad_token_id=50256)
        assert tok.decode(alone[0, len(tok.encode(prompt)):].tolist()).split("\n")[0] == text


def test_the_reference_is_measured_like_the_run(tmp_path, shakespeare_shards):
    """evaluate_checkpoints.py on a run's final model reproduces the run's last val/loss (same tokens, same
    precision policy), and with that model as the reference the report says it is reached at the last step."""
    from training.analysis.report import build_report
    from training.analysis.runs import load_run

    from .helpers import read_scalars, tiny_run_config, train

    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=20, eval_every=10, eval_tokens=2000))
    last_val = read_scalars(run)["val/loss"][20]
    out = tmp_path / "eval.json"
    result = _run_eval([run / "final", "--skip_hellaswag", "--output", out, "--reference", run / "final",
                        "--log_reference_to", run])
    assert result.returncode == 0, result.stderr[-2000:]
    evaluation = json.loads(out.read_text())
    ours = evaluation["models"][0]
    assert ours["val_loss"] == pytest.approx(last_val, abs=1e-4)
    assert evaluation["val_tokens"] == ours["val_tokens"] == (2000 // 32) * 32  # the run's eval_tokens, truly
    assert evaluation["seq_len"] == 32 and evaluation["measured_like_run"] is True
    assert evaluation["precision"] == "float32 weights"
    recorded = json.loads((run / "reference_eval.json").read_text())
    assert recorded["val_tokens"] == ours["val_tokens"] and recorded["precision"] == "float32 weights"
    report = build_report(load_run(run))
    assert report["reference"]["val_crossing_step"] == pytest.approx(20.0)
    assert "reference_reached" in {f["id"] for f in report["findings"]}


def test_samples_end_at_the_first_end_of_text():
    from training.evaluation.sampling import until_end_of_text

    assert until_end_of_text([1, 2, 3, 50256, 4, 50256], 2, 50256) == [1, 2, 3]
    assert until_end_of_text([1, 2, 3, 4], 2, 50256) == [1, 2, 3, 4]
    assert until_end_of_text([50256, 2, 3], 1, 50256) == [50256, 2, 3]  # an EOT inside the prompt stays
