import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from training.cli import ConfigError, parse_run_config
from training.data.loaders import ValidationSet
from training.data.shards import write_shard_atomic
from training.layout import RunLayout
from training.optim.schedules import warmup_cosine_factor
from training.trainer.trainer import NonFiniteLossError, Trainer

from .helpers import (
    ACCELERATE_LAUNCH,
    PoisonStep,
    StopAtStep,
    config_to_argv,
    grads_snapshot,
    load_final_weights,
    read_scalars,
    run_pretrain,
    tiny_run_config,
    train,
)


def test_tiny_run_learns(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=40, warmup_steps=5, max_lr=1e-2, min_lr=1e-3)
    trainer = train(config)
    losses = [h["train/loss"] for h in trainer.state.log_history if "train/loss" in h]
    assert len(losses) == 40
    assert losses[0] == pytest.approx(math.log(50304), abs=0.15)
    assert sum(losses[-5:]) / 5 < losses[0] - 2.5


def test_tensorboard_has_the_documented_tags(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, eval_every=3, sample_every=6,
                             sample_tokens=4, num_samples=1, callbacks=["grad_norm", "layer_ratios"],
                             diagnostics_every=3, peak_flops=1e12)
    trainer = train(config)
    scalars = read_scalars(tmp_path)
    for tag in ["train/loss", "train/lr", "train/grad_norm", "train/tokens_seen", "train/tokens_per_sec",
                "train/step_time_ms", "train/mfu", "val/loss", "val/perplexity", "train/clipped_fraction",
                "grad_ratio/h.0.mlp.c_fc.weight", "update_ratio/wte.weight", "grad_norm_block/h.1"]:
        assert tag in scalars, tag
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4, 5, 6]
    assert sorted(scalars["val/loss"]) == [3, 6]
    assert scalars["train/tokens_seen"][6] == 6 * 128
    if importlib.util.find_spec("resource") is not None:  # CPU: the process's peak resident size so far
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2 ** 30
        memory = [scalars["train/peak_memory_gb"][step] for step in range(1, 7)]
        assert 0.05 < memory[0] <= memory[-1] <= peak and memory == sorted(memory)
    assert not any(tag.startswith(("grad_ratio/module.", "grad_ratio/_orig_mod", "grad_ratio/transformer"))
                   for tag in scalars)
    assert "update_ratio/lm_head.weight" not in scalars  # tied to wte, counted once
    from training.analysis.runs import read_run_texts

    texts = read_run_texts(tmp_path)
    assert "samples" in texts and "config" in texts
    assert (tmp_path / "config.yaml").exists()
    _the_first_screen_shows_the_loss_the_reference_and_the_learning_rate(tmp_path, trainer)
    for block in (0, 1):  # each block's ratios in its own run, one tag per kind: told apart by colour
        mine = read_scalars(RunLayout(tmp_path).block_run_dir(block))
        assert mine["by_block/update_ratio/attn.c_attn"] == scalars[f"update_ratio/h.{block}.attn.c_attn.weight"]
        own = scalars[f"grad_ratio/h.{block}.mlp.c_fc.weight"][3]
        assert mine["by_block/grad_ratio/mlp.c_fc"][3] == pytest.approx(own)


def _the_first_screen_shows_the_loss_the_reference_and_the_learning_rate(run, trainer):
    """The end-of-run summary's link opens TensorBoard's custom-scalars page; the layout that page loads (read back
    with TensorBoard's own reader and the plugin's proto) starts with the loss, the measured reference and the
    learning rate, before anything per layer."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    from training.trainer.summary import end_summary

    assert "http://localhost:6006/#custom_scalars" in end_summary(trainer)
    accumulator = EventAccumulator(str(run), size_guidance={"tensors": 0})
    accumulator.Reload()
    layout = layout_pb2.Layout()
    layout.ParseFromString(accumulator.Tensors(metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    first = layout.category[0]
    tags = [tag for chart in first.chart for tag in chart.multiline.tag]
    assert any("train/loss" in t for t in tags) and any("val/loss" in t for t in tags)
    assert any("reference/val_loss" in t for t in tags) and any("train/lr" in t for t in tags)
    assert all("h\\." not in t for t in tags)  # nothing per layer on the first screen


def test_logged_lr_and_tokens_follow_the_schedule(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=5, warmup_steps=2, max_lr=1e-3, min_lr=1e-4)
    trainer = train(config)
    lrs = [h["train/lr"] for h in trainer.state.log_history if "train/lr" in h]
    expected = [1e-3 * warmup_cosine_factor(i, 2, 5, 0.1) for i in range(5)]
    assert lrs == pytest.approx(expected)
    assert trainer.state.num_input_tokens_seen == 5 * 128


class _Synthetic:
    """A loader seam: fixed random tokens, read in the same order as DistributedTokenLoader reads a stream."""

    def __init__(self, tokens, batch_size, seq_len):
        self.tokens, self.B, self.T, self.pos, self.epoch = tokens, batch_size, seq_len, 0, 0

    def next_batch(self):
        span = self.tokens[self.pos:self.pos + self.B * self.T + 1]
        self.pos += self.B * self.T
        return span[:-1].view(self.B, self.T), span[1:].view(self.B, self.T)

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


class _GradCapture(StopAtStep):
    def __init__(self):
        super().__init__(1)
        self.grads, self.loss = None, None

    def on_pre_optimizer_step(self, args, state, control, model=None, loss=None, **kwargs):
        self.grads, self.loss = grads_snapshot(model), loss


def test_gradient_accumulation_equals_a_bigger_batch(tmp_path):
    torch.manual_seed(0)
    tokens = torch.randint(0, 50257, (16 * 32 * 2 + 1,))
    results = []
    for micro, name in ((4, "accum4"), (16, "accum1")):
        config = tiny_run_config(tmp_path / name, micro_batch_size=micro, total_batch_tokens=16 * 32, max_steps=1, warmup_steps=0,
                                 grad_clip=0.0)
        capture = _GradCapture()
        trainer = Trainer(config, callbacks=[capture], train_loader=_Synthetic(tokens, micro, 32))
        assert trainer.grad_accum == 16 // micro
        trainer.train()
        trainer.close()
        results.append(capture)
    accumulated, big = results
    assert accumulated.loss == pytest.approx(big.loss, abs=1e-5)
    for name, grad in big.grads.items():
        torch.testing.assert_close(accumulated.grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_exact_resume_after_sigkill(tmp_path, shakespeare_shards):
    base = tiny_run_config(tmp_path / "straight", shakespeare_shards, max_steps=9, save_every=3, eval_every=3,
                           callbacks=["grad_norm", "layer_ratios", "spike_detector:min_history=2"])
    argv = config_to_argv(base)
    train(base)
    crashed = tmp_path / "crashed"
    argv_crashed = argv + ["--output_dir", str(crashed)]
    killed = run_pretrain(argv_crashed + ["--callbacks", "grad_norm", "layer_ratios",
                                          "spike_detector:min_history=2", "tests.helpers.KillAtStep:step=5"],
                          check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in (crashed / "checkpoints").iterdir()) == ["step_0000003"]
    resumed = tiny_run_config(crashed, shakespeare_shards, max_steps=9, save_every=3, eval_every=3,
                              callbacks=["grad_norm", "layer_ratios", "spike_detector:min_history=2"],
                              resume_from_checkpoint="latest")
    train(resumed)
    straight = read_scalars(tmp_path / "straight")
    resumed = read_scalars(crashed)
    for tag in ("train/loss", "train/grad_norm", "val/loss", "update_ratio/h.1.attn.c_attn.weight",
                "spikes/loss_z"):
        assert resumed[tag] == straight[tag], tag  # bitwise: CPU, fp32
    a, b = load_final_weights(tmp_path / "straight"), load_final_weights(crashed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_gloo_run_matches_one_process_with_double_accumulation(tmp_path, shakespeare_shards):
    base = tiny_run_config(tmp_path / "one", shakespeare_shards, max_steps=4, total_batch_tokens=256,
                           eval_every=4, callbacks=["layer_ratios"], diagnostics_every=2)
    train(base)
    run_pretrain(config_to_argv(base) + ["--output_dir", str(tmp_path / "two")],
                 launcher=[*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no"])
    one, two = read_scalars(tmp_path / "one"), read_scalars(tmp_path / "two")
    assert one["run/num_processes"][0] == 1 and two["run/num_processes"][0] == 2
    assert one["run/grad_accum_steps"][0] == 2 and two["run/grad_accum_steps"][0] == 1
    for step in range(1, 5):
        assert two["train/loss"][step] == pytest.approx(one["train/loss"][step], abs=2e-5)
    assert two["val/loss"][4] == pytest.approx(one["val/loss"][4], abs=2e-5)
    assert "update_ratio/h.0.mlp.c_fc.weight" in two
    assert not any("module." in tag or "_orig_mod" in tag for tag in two)
    assert two["train/tokens_seen"][4] == one["train/tokens_seen"][4] == 4 * 256
    # The gradient noise scale from the two batch sizes each layout has: one process's gradient before the
    # all-reduce (DDP), the first micro-batch's (accumulation). Same data, same estimate.
    for step in (1, 2, 4):
        assert two["noise/b_simple_tokens"][step] == pytest.approx(one["noise/b_simple_tokens"][step], rel=1e-3)


def test_cpu_flag_with_two_processes_silently_runs_one(tmp_path, shakespeare_shards):
    base = tiny_run_config(tmp_path, shakespeare_shards, max_steps=1)
    run_pretrain(config_to_argv(base), launcher=[*ACCELERATE_LAUNCH, "--cpu", "--num_processes", "2",
                                                 "--num_machines", "1", "--mixed_precision", "no",
                                                 "--dynamo_backend", "no"])
    assert read_scalars(tmp_path)["run/num_processes"][0] == 1


def test_nonfinite_loss_stops_and_names_the_step_and_checkpoint(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=8, save_every=2)
    trainer = Trainer(config, callbacks=[PoisonStep(5, permanent=True)])
    with pytest.raises(NonFiniteLossError, match=r"Step 5: loss=nan.*step_0000004"):
        trainer.train()
    trainer.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000002", "step_0000004"]


def test_nonfinite_loss_can_be_skipped(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, on_nonfinite="skip")
    trainer = train(config, callbacks=[PoisonStep(3)])
    assert trainer.skipped_updates == 1
    assert all(torch.isfinite(p).all() for p in trainer.raw_model.parameters())
    losses = [h["train/loss"] for h in trainer.state.log_history if "train/loss" in h]
    assert math.isnan(losses[2]) and all(math.isfinite(v) for i, v in enumerate(losses) if i != 2)


def test_checkpoints_are_loadable_and_pruned(tmp_path, shakespeare_shards):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=2, keep_last=2)
    (tmp_path / "checkpoints" / "step_0000001.tmp").mkdir(parents=True)  # a save interrupted earlier
    trainer = train(config)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000004", "step_0000006"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.config.model_type == "nanogpt"
    ids = torch.randint(0, 50257, (1, 8))
    torch.testing.assert_close(model(ids).logits, trainer.raw_model(ids).logits)
    assert AutoTokenizer.from_pretrained(tmp_path / "final")("Hello world").input_ids == [15496, 995]
    assert (tmp_path / "checkpoints" / "step_0000006" / "model" / "model.safetensors").exists()


def test_bad_configuration_errors(tmp_path, shakespeare_shards):
    with pytest.raises(ValueError, match=r"total_batch_tokens \(1000\) is not divisible.*4\) x seq_len \(32\)"):
        Trainer(tiny_run_config(tmp_path, shakespeare_shards, total_batch_tokens=1000))
    preset = tmp_path / "bad.yaml"
    preset.write_text("train:\n  max_lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown field 'max_lrr' in section 'train'"):
        parse_run_config(["--config", str(preset)])
    with pytest.raises(ConfigError, match="does not exist"):
        Trainer(tiny_run_config(tmp_path / "run", tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"min_lr \(0.1\) is larger than max_lr \(0.01\)"):
        parse_run_config(["--max_lr", "0.01", "--min_lr", "0.1"])
    with pytest.raises(ConfigError, match="No training data"):
        Trainer(tiny_run_config(tmp_path / "run"))
    with pytest.raises(ValueError, match="vocab_size=1000"):
        Trainer(tiny_run_config(tmp_path / "run", shakespeare_shards, vocab_size=1000))


def test_offline_download_fails_at_once_saying_what_to_pass(tmp_path):
    config = tiny_run_config(tmp_path, download_url="http://127.0.0.1:9/input.txt")
    with pytest.raises(ConfigError, match=r"downloading http://127.0.0.1:9/input.txt failed.*Pass --data PATH"):
        Trainer(config)


def test_corpus_given_as_data_is_prepared_on_the_fly(tmp_path, fineweb_path):
    config = tiny_run_config(tmp_path, fineweb_path, max_steps=2, val_tokens=4096, eval_every=2, eval_tokens=512)
    trainer = train(config)
    assert list((tmp_path / "data" / "shards").glob("*_train_*.npy"))
    assert trainer.state.best_metric is not None


def test_pretrain_help_documents_every_field(capsys):
    from training.config import ARGUMENT_CLASSES

    from .test_errors import script

    with pytest.raises(SystemExit):
        script("pretrain").main(["--help"])
    out = capsys.readouterr().out
    for cls in ARGUMENT_CLASSES:
        for name in cls.__dataclass_fields__:
            assert f"--{name}" in out, name
    assert "--config" in out
    assert len(out.splitlines()) < 220  # one or two lines per option (it was 369 lines before)


def test_pretrain_script_reports_config_errors_cleanly(tmp_path, capsys):
    from .test_errors import run_main

    code, err = run_main("pretrain", ["--total_batch_tokens", "1000", "--seq_len", "32", "--micro_batch_size", "4",
                                      "--cpu", "--data", str(tmp_path)], capsys)
    assert code == 2 and "not divisible" in err


def test_validation_loss_is_the_mean_over_the_fixed_tokens(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=1, eval_every=1, eval_tokens=1024)
    trainer = train(config)
    val = ValidationSet(shakespeare_shards, max_tokens=1024)
    model = trainer.raw_model.eval()
    with torch.no_grad():
        x = val.tokens[:1024].view(-1, 32)
        y = val.tokens[1:1025].view(-1, 32)
        direct = torch.nn.functional.cross_entropy(model(x).logits.reshape(-1, 50304), y.reshape(-1)).item()
    assert trainer.state.log_history[-1]["val/loss"] == pytest.approx(direct, abs=1e-5)


def test_presets_parse(tmp_path):
    seed = parse_run_config(["--config", "configs/gpt2-124m-seed.yaml"])
    assert seed.train.total_batch_tokens == 589_824 and seed.train.micro_batch_size == 16
    assert seed.train.seq_len == 1024 and seed.train.max_steps == 1700
    assert (seed.args.max_lr, seed.args.min_lr, seed.args.warmup_steps) == (1.8e-3, 1.8e-4, 620)
    assert seed.args.weight_decay == 0.1 and seed.args.grad_clip == 1.0 and seed.args.eval_every == 25
    assert seed.train.grad_accum_steps(3) == 12  # 16 x 1024 x 12 x 3 GPUs
    assert seed.model.vocab_size == 50304 and seed.model.n_layer == 12
    nano = parse_run_config(["--config", "configs/gpt2-124m-build-nanogpt.yaml"])
    assert nano.train.total_batch_tokens == 524_288 and nano.train.micro_batch_size == 64
    assert (nano.args.max_lr, nano.args.min_lr, nano.args.warmup_steps, nano.args.max_steps) == (
        6e-4, 6e-5, 715, 19_073)
    tiny = parse_run_config(["--config", "configs/cpu-tiny.yaml", "--max_steps", "7"])
    assert tiny.train.max_steps == 7 and tiny.train.cpu


def test_hellaswag_runs_in_the_loop_on_its_schedule(tmp_path, shakespeare_shards, hellaswag_path):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, hellaswag_every=2,
                             hellaswag_path=str(hellaswag_path), hellaswag_limit=8)
    train(config)
    scalars = read_scalars(tmp_path)
    assert sorted(scalars["hellaswag/acc_norm"]) == [2, 4]
    assert all(0.0 <= v <= 1.0 for v in scalars["hellaswag/acc"].values())


def test_settings_of_optional_steps_are_checked_before_training(tmp_path, shakespeare_shards):
    with pytest.raises(ConfigError, match=r"sample_tokens 100 = 1\d\d positions, more than the model's context of 32"):
        Trainer(tiny_run_config(tmp_path / "run", shakespeare_shards, sample_every=100, sample_tokens=100))
    with pytest.raises(ConfigError, match="sample_prompt is empty"):
        Trainer(tiny_run_config(tmp_path / "run", shakespeare_shards, sample_every=5, sample_prompt=""))
    with pytest.raises(ValueError, match=r"eval_tokens \(0\) must be at least seq_len"):
        tiny_run_config(tmp_path / "run", shakespeare_shards, eval_every=5, eval_tokens=0)
    small_val = tmp_path / "small_val"
    small_val.mkdir()
    for shard in shakespeare_shards.glob("*_train_*.npy"):
        (small_val / shard.name).symlink_to(shard)
    write_shard_atomic(small_val / "shakespeare_val_000000.npy", np.full(20, 50256, dtype=np.uint16))
    with pytest.raises(ConfigError, match=r"has 20 tokens, fewer than seq_len \+ 1 = 33"):
        Trainer(tiny_run_config(tmp_path / "run", small_val, eval_every=5))
    with pytest.raises(ValueError, match="does not exist"):
        Trainer(tiny_run_config(tmp_path / "run", shakespeare_shards, hellaswag_every=5,
                                hellaswag_path=str(tmp_path / "missing.jsonl")))
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_skipping_updates_is_bounded(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=10, save_every=2, on_nonfinite="skip",
                             max_consecutive_skips=2)
    trainer = Trainer(config, callbacks=[PoisonStep(3, permanent=True)])
    with pytest.raises(NonFiniteLossError, match=r"Step 5: 3 updates skipped in a row.*step_0000004"):
        trainer.train()
    trainer.close()
    total = tiny_run_config(tmp_path / "total", shakespeare_shards, max_steps=10, on_nonfinite="skip",
                            max_skipped_updates=1)
    trainer = Trainer(total, callbacks=[PoisonStep(2), PoisonStep(4)])
    with pytest.raises(NonFiniteLossError, match="2 in total"):
        trainer.train()
    trainer.close()


def test_a_run_that_repeats_its_data_says_how_often(tmp_path, capsys):
    data = tmp_path / "tiny_data"
    data.mkdir()
    write_shard_atomic(data / "t_val_000000.npy", np.full(100, 50256, dtype=np.uint16))
    write_shard_atomic(data / "t_train_000001.npy", (np.arange(600) % 1000).astype(np.uint16))
    Trainer(tiny_run_config(tmp_path / "run", data, max_steps=20)).close()
    assert "20 steps x 128 tokens = 2,560 tokens from 600 training tokens: the data is read 4.27 times" in \
        capsys.readouterr().out


def test_training_and_validation_build_no_kv_cache(tmp_path, shakespeare_shards, monkeypatch):
    import transformers.cache_utils as cache_utils

    created = []
    original = cache_utils.DynamicCache.__init__

    def counting(self, *args, **kwargs):
        created.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cache_utils.DynamicCache, "__init__", counting)
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=3, eval_every=3, sample_every=0))
    assert created == []  # generate() would build one; training and validation forwards must not


def test_one_run_is_one_tensorboard_entry(tmp_path, shakespeare_shards):
    """hparams, the measured reference and the run's scalars all live in the run folder itself: TensorBoard lists a
    run once, by its own name (no timestamp-named hparams sub-run, no reference sub-run, no "<run>/tensorboard"),
    and its Custom Scalars tab has the seed's plots as charts."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.evaluation.comparison import record_reference

    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2))
    record_reference(tmp_path, {"name": "gpt2", "path": "gpt2", "val_loss": 3.29})
    folders = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")}
    blocks = {RunLayout(tmp_path).block_run_dir(block) for block in range(2)}  # each block's own run, if logged
    assert tmp_path in folders and folders - {tmp_path} <= blocks
    plugins, layouts = set(), []
    for path in tmp_path.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        try:
            plugins |= set(accumulator.PluginTagToContent("hparams"))
        except KeyError:  # this file holds no hparams summary
            pass
        layouts += read_layouts(accumulator)
    assert plugins  # the configuration is in TensorBoard's HParams tab
    assert read_scalars(tmp_path)["reference/val_loss"] == {0: pytest.approx(3.29)}
    (layout,) = layouts
    categories = [c.title for c in layout.category]
    assert categories[0] == "1. loss" and len(categories) == 7
    charts = {chart.title: list(chart.multiline.tag) for c in layout.category for chart in c.chart}
    assert charts["train and validation loss, measured reference"] == ["train/loss", "val/loss",
                                                                      "reference/val_loss"]
    assert charts["gradient norm (before clipping) and the clip threshold"] == ["train/grad_norm", "train/grad_clip"]
    import re

    every_block = charts["update_ratio/attn.c_attn, every block"]  # one chart for every block's matrices, read
    assert [t for t in ("by_block/update_ratio/attn.c_attn", "by_block/update_ratio/mlp.c_fc",  # from the blocks'
                        "update_ratio/h.0.attn.c_attn.weight") if re.fullmatch(every_block[0], t)] == [  # own runs
        "by_block/update_ratio/attn.c_attn"]
    (timing,) = charts["per step: data, forward+backward, callbacks, optimizer; and occasional work (ms)"]
    logged = [tag for tag in read_scalars(tmp_path) if tag.startswith("time/")]
    assert "time/forward_backward_ms" in logged and all(re.fullmatch(timing, tag) for tag in logged)


def read_layouts(accumulator) -> list:
    """Custom-scalars layouts of an event file, read back with TensorBoard's own reader and protos."""
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    found = []
    try:
        tags = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:
        return found
    for tag in tags:
        for event in accumulator.Tensors(tag):
            layout = layout_pb2.Layout()
            layout.ParseFromString(event.tensor_proto.string_val[0])
            found.append(layout)
    return found


@pytest.mark.parametrize("preset", ["configs/gpt2-350m.yaml", "configs/gpt2-774m.yaml", "configs/gpt2-1558m.yaml"])
def test_the_larger_presets_start_at_reduced_width(tmp_path, shakespeare_shards, preset):
    """Medium, large and XL, shrunk to 2 layers of width 32 (their real shapes are checked by the planner): the
    preset's settings (schedule, checkpointing, evaluation) train for a few steps."""
    config = parse_run_config(["--config", preset, "--data", str(shakespeare_shards), "--output_dir", str(tmp_path),
                               "--cpu", "true", "--mixed_precision", "no", "--n_layer", "2", "--n_head", "2",
                               "--n_embd", "32", "--seq_len", "32", "--micro_batch_size", "2",
                               "--total_batch_tokens", "128", "--max_steps", "3", "--warmup_steps", "1",
                               "--eval_every", "3", "--eval_tokens", "256", "--hellaswag_every", "0",
                               "--sample_every", "0", "--save_every", "3", "--progress_bar", "false"])
    trainer = train(config)
    assert trainer.state.global_step == 3 and trainer.grad_accum == 2
    assert trainer.raw_model.is_gradient_checkpointing == config.model.gradient_checkpointing
    assert read_scalars(tmp_path)["val/loss"][3] < 11.0


def test_a_preset_of_the_earlier_layout_reads_the_same_with_a_note(tmp_path, capsys):
    """Before the components had their own sections, `train` held the optimizer, schedule, checkpoint, guard,
    evaluation and hub fields: such a preset still works, and says once where they belong now."""
    old = tmp_path / "old.yaml"
    old.write_text("model: {n_layer: 2, n_head: 2, n_embd: 32}\ntrain: {max_steps: 7, max_lr: 1.0e-3, "
                   "warmup_steps: 3, save_every: 5, eval_every: 0, spike_guard: true, push_checkpoints: false}\n")
    new = tmp_path / "new.yaml"
    new.write_text("model: {n_layer: 2, n_head: 2, n_embd: 32}\ntrain: {max_steps: 7}\noptimizer: {max_lr: 1.0e-3}\n"
                   "schedule: {warmup_steps: 3}\ncheckpoint: {save_every: 5}\nevaluation: {eval_every: 0}\n"
                   "guards: {spike_guard: true}\nhub: {push_checkpoints: false}\n")
    assert parse_run_config(["--config", str(old)]).to_dict() == parse_run_config(["--config", str(new)]).to_dict()
    assert "has the layout of an earlier version" in capsys.readouterr().out
    misplaced = tmp_path / "misplaced.yaml"
    misplaced.write_text("optimizer: {warmup_steps: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown field 'warmup_steps' in section 'optimizer' \(it belongs to the "
                                          r"'schedule' section\)"):
        parse_run_config(["--config", str(misplaced)])
