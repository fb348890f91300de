"""Construction of a run's parts: accelerator, model, data, callbacks."""

import sys

import pytest
import torch
from transformers.trainer_callback import EarlyStoppingCallback

from modeling import GPTForCausalLM
from training.data.loaders import DistributedTokenLoader, ValidationSet
from training.diagnostics.callbacks import GradNormCallback, HistogramCallback, LayerRatioCallback
from training.errors import ConfigError
from training.layout import RunLayout
from training.trainer.builders import (
    build_accelerator,
    build_callbacks,
    build_data,
    build_model,
    check_tokenizer_fits,
    load_initial_weights,
    resolve_data_dir,
)

from .helpers import tiny_run_config


def test_accelerator_derives_gradient_accumulation(tmp_path):
    config = tiny_run_config(tmp_path, total_batch_tokens=512, micro_batch_size=4, seq_len=32)
    accelerator = build_accelerator(config)
    assert accelerator.gradient_accumulation_steps == 512 // (4 * 32)
    assert accelerator.device.type == "cpu"


def test_model_from_the_arguments(tmp_path):
    config = tiny_run_config(tmp_path, n_layer=3, n_embd=48, n_head=4, seq_len=24)
    model = build_model(config)
    assert isinstance(model, GPTForCausalLM)
    assert (model.config.n_layer, model.config.n_embd, model.config.n_positions) == (3, 48, 24)
    assert model.config.vocab_size == 50304


def test_init_from_our_checkpoint_and_its_context_check(tmp_path):
    source = build_model(tiny_run_config(tmp_path, seq_len=32))
    source.save_pretrained(tmp_path / "source")
    loaded = load_initial_weights(str(tmp_path / "source"))
    torch.testing.assert_close(loaded.transformer.wte.weight, source.transformer.wte.weight)
    too_long = tiny_run_config(tmp_path, seq_len=64, init_from=str(tmp_path / "source"))
    with pytest.raises(ConfigError, match="context of 32 tokens, shorter than seq_len=64"):
        build_model(too_long)


def test_tokenizer_must_fit_the_vocabulary(tmp_path):
    model = build_model(tiny_run_config(tmp_path, vocab_size=50000))
    with pytest.raises(ValueError, match="50257"):
        check_tokenizer_fits(model, 50257)


def test_callbacks_in_order_with_cadences_from_the_logging_arguments(tmp_path):
    config = tiny_run_config(tmp_path, callbacks=["grad_norm", "layer_ratios:every=3", "histograms",
                                                  "early_stopping:early_stopping_patience=2"],
                             diagnostics_every=7, histogram_every=11, log_every=5, eval_every=10)
    mine = object()
    callbacks = build_callbacks(config, [mine])
    assert [type(c) for c in callbacks[:4]] == [GradNormCallback, LayerRatioCallback, HistogramCallback,
                                                EarlyStoppingCallback]
    assert callbacks[4] is mine
    grad_norm, ratios, histograms, early = callbacks[:4]
    assert grad_norm.every == 7  # from --diagnostics_every
    assert ratios.every == 3  # the spec wins
    assert histograms.every == 11  # from --histogram_every
    assert early.early_stopping_patience == 2


def test_unknown_callback_and_bad_options_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="Unknown callback 'nope'"):
        build_callbacks(tiny_run_config(tmp_path, callbacks=["nope"]))
    with pytest.raises(ValueError, match="does not accept"):
        build_callbacks(tiny_run_config(tmp_path, callbacks=["grad_norm:colour=red"]))


def test_push_to_hub_callback_is_found_by_name_with_its_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    config = tiny_run_config(tmp_path, push_to_hub="me/run", push_checkpoints=True, hub_private=True)
    pusher = build_callbacks(config)[-1]
    assert type(pusher).__name__ == "HubPushCallback"
    assert (pusher.repo_id, pusher.push_checkpoints, pusher.private) == ("me/run", True, True)


def test_building_callbacks_without_a_push_does_not_import_the_hub(tmp_path):
    for name in [m for m in sys.modules if m.startswith("training.hub")]:
        sys.modules.pop(name)
    build_callbacks(tiny_run_config(tmp_path, callbacks=["grad_norm"]))
    assert not any(m.startswith("training.hub") for m in sys.modules)


def test_data_folder_of_shards_is_used_as_is(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, eval_every=5)
    accelerator = build_accelerator(config)
    assert resolve_data_dir(config, accelerator) == shakespeare_shards
    loader, val_set = build_data(config, accelerator, vocab_size=50304)
    assert isinstance(loader, DistributedTokenLoader) and isinstance(val_set, ValidationSet)
    x, y = loader.next_batch()
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    assert build_data(tiny_run_config(tmp_path, shakespeare_shards, eval_every=0), accelerator, 50304)[1] is None


def test_corpus_file_is_prepared_into_the_run_folder(tmp_path, shakespeare_path):
    config = tiny_run_config(tmp_path / "run", shakespeare_path, val_tokens=4096, shard_tokens=100_000)
    prepared = resolve_data_dir(config, build_accelerator(config))
    assert prepared == RunLayout(tmp_path / "run").prepared_shards_dir
    assert any(prepared.glob("*_train_*.npy")) and any(prepared.glob("*_val_*.npy"))


def test_missing_data_is_a_config_error(tmp_path):
    config = tiny_run_config(tmp_path, tmp_path / "nowhere.txt")
    with pytest.raises(ConfigError, match="nowhere.txt does not exist"):
        resolve_data_dir(config, build_accelerator(config))
    with pytest.raises(ConfigError, match="No training data"):
        no_data = tiny_run_config(tmp_path)
        resolve_data_dir(no_data, build_accelerator(no_data))


def test_report_to_keeps_tensorboard_and_names_a_tracker_that_is_not_installed():
    import importlib.util

    from training.errors import ConfigError
    from training.trainer.builders import trackers

    assert trackers([]) == ["tensorboard"] and trackers(["tensorboard"]) == ["tensorboard"]
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match=r"--report_to wandb: not installed here \(pip install wandb\)"):
            trackers(["wandb"])
