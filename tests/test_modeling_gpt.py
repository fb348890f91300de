import copy
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from modeling import GPTConfig, GPTForCausalLM


def _clone_with_attn(model, implementation):
    other = GPTForCausalLM(copy.deepcopy(model.config))
    other.load_state_dict(model.state_dict())
    other.set_attn_implementation(implementation)
    return other.eval()


def test_forward_shapes_and_tied_head(tiny_model):
    ids = torch.randint(0, 96, (3, 10))
    out = tiny_model(ids)
    assert out.logits.shape == (3, 10, 96)
    assert tiny_model.lm_head.weight is tiny_model.transformer.wte.weight


def test_gpt2_parameter_names(tiny_model):
    names = set(dict(tiny_model.named_parameters(remove_duplicate=False)))
    for expected in ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                     "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.bias",
                     "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight",
                     "transformer.ln_f.bias", "lm_head.weight"]:
        assert expected in names


def test_shift_labels_scores_all_positions_and_labels_drop_the_last(tiny_model):
    tokens = torch.randint(0, 96, (2, 9))
    x, y = tokens[:, :-1], tokens[:, 1:]
    logits = tiny_model(x).logits
    all_positions = F.cross_entropy(logits.reshape(-1, 96), y.reshape(-1))
    assert torch.allclose(tiny_model(x, shift_labels=y).loss, all_positions, atol=1e-6)
    without_last = F.cross_entropy(logits[:, :-1].reshape(-1, 96), x[:, 1:].reshape(-1))
    assert torch.allclose(tiny_model(x, labels=x).loss, without_last, atol=1e-6)


def test_init_statistics_follow_gpt2():
    config = GPTConfig(n_layer=4, n_embd=256, n_head=4, vocab_size=50304, n_positions=128)
    torch.manual_seed(0)
    model = GPTForCausalLM(config)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    for block in model.transformer.h:
        assert block.attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.mlp.c_fc.bias.abs().max().item() == 0.0
        assert torch.all(block.ln_1.weight == 1)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.transformer.wpe.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_initial_loss_is_uniform_prediction():
    config = GPTConfig(n_layer=2, n_embd=64, n_head=4, n_positions=64)  # the real 50304 vocab
    torch.manual_seed(0)
    model = GPTForCausalLM(config).eval()
    tokens = torch.randint(0, 50257, (4, 65))
    with torch.no_grad():
        loss = model(tokens[:, :-1], shift_labels=tokens[:, 1:]).loss.item()
    assert abs(loss - math.log(50304)) < 0.1


def test_sdpa_equals_eager(tiny_model):
    assert tiny_model.config._attn_implementation == "sdpa"
    eager = _clone_with_attn(tiny_model, "eager")
    assert eager.config._attn_implementation == "eager"
    ids = torch.randint(0, 96, (2, 16))
    torch.testing.assert_close(eager(ids).logits, tiny_model(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_generate_with_cache_equals_greedy_without_cache(tiny_model, implementation):
    model = _clone_with_attn(tiny_model, implementation)
    prompt = torch.randint(2, 96, (2, 5))
    cached = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=1)
    uncached = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=False, pad_token_id=1)
    manual = prompt
    with torch.no_grad():
        for _ in range(12):
            manual = torch.cat([manual, model(manual, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(cached, manual)
    assert torch.equal(uncached, manual)


def test_cache_is_read_under_both_argument_names(tiny_model):
    ids = torch.randint(0, 96, (1, 8))
    full = tiny_model(ids).logits[:, -1]
    for name in ("cache", "past_key_values"):
        prefix = tiny_model(ids[:, :-1], use_cache=True)
        step = tiny_model(ids[:, -1:], use_cache=True, **{name: prefix.cache})
        torch.testing.assert_close(step.logits[:, -1], full, atol=1e-5, rtol=1e-5)


def test_chunked_prefill_after_cache_matches_full_forward(tiny_model):
    ids = torch.randint(0, 96, (2, 12))
    full = tiny_model(ids).logits
    prefix = tiny_model(ids[:, :7], use_cache=True)
    rest = tiny_model(ids[:, 7:], cache=prefix.cache, use_cache=True)
    torch.testing.assert_close(rest.logits, full[:, 7:], atol=1e-5, rtol=1e-5)


def test_left_padded_batch_matches_unpadded_rows(tiny_model):
    short, long = torch.randint(2, 96, (1, 5)), torch.randint(2, 96, (1, 9))
    ids = torch.cat([torch.cat([torch.full((1, 4), 1), short], 1), long])
    mask = torch.cat([torch.cat([torch.zeros(1, 4), torch.ones(1, 5)], 1), torch.ones(1, 9)]).long()
    logits = tiny_model(ids, attention_mask=mask).logits
    assert torch.isfinite(logits).all()  # fully masked pad rows stay finite
    torch.testing.assert_close(logits[0, 4:], tiny_model(short).logits[0], atol=1e-5, rtol=1e-5)
    generated = tiny_model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=1)
    alone_short = tiny_model.generate(short, max_new_tokens=6, do_sample=False, pad_token_id=1)
    alone_long = tiny_model.generate(long, max_new_tokens=6, do_sample=False, pad_token_id=1)
    assert torch.equal(generated[0, -6:], alone_short[0, -6:])
    assert torch.equal(generated[1, -6:], alone_long[0, -6:])


def test_context_longer_than_positions_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="n_positions=32"):
        tiny_model(torch.zeros(1, 33, dtype=torch.long))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model):
    ids = torch.randint(0, 96, (2, 16))
    reference = _clone_with_attn(tiny_model, "sdpa").train()
    reference(ids, labels=ids).loss.backward()
    checkpointed = _clone_with_attn(tiny_model, "sdpa").train()
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.transformer.h[0].gradient_checkpointing
    checkpointed(ids, labels=ids).loss.backward()
    for (name, a), (_, b) in zip(reference.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_save_and_from_pretrained_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "modeling_gpt.py", "configuration_gpt.py"} <= files
    assert not any(name.endswith(".bin") for name in files)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, GPTForCausalLM)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    ids = torch.randint(0, 96, (2, 8))
    torch.testing.assert_close(loaded(ids).logits, tiny_model(ids).logits)


HIDDEN_PACKAGE_LOAD = textwrap.dedent(
    """
    import sys, json, torch
    sys.modules["modeling"] = None  # make the project's package unimportable
    sys.modules["training"] = None
    try:
        import modeling
        raise SystemExit("the project package is still importable")
    except ImportError:
        pass
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, dtype=torch.float32).eval()
    model.tie_weights()
    ids = torch.tensor(json.loads(sys.argv[2]))
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=1)
    print(json.dumps({"module": type(model).__module__, "tokens": out.tolist(),
                      "tied": model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()}))
    """
)


def test_saved_folder_loads_with_remote_code_where_package_is_hidden(tiny_config, tmp_path):
    """With qk_norm on (a field the default GPT-2 shape does not have): the config field and the extra weights
    travel with the folder. The default shape is loaded the same way by the Hub staging test."""
    import json

    torch.manual_seed(0)
    tiny_model = GPTForCausalLM(GPTConfig(**{**tiny_config.to_dict(), "qk_norm": True})).eval()
    folder = tmp_path / "ckpt"
    tiny_model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["qk_norm"] is True
    prompt = [[3, 4, 5, 6]]
    expected = tiny_model.generate(torch.tensor(prompt), max_new_tokens=8, do_sample=False, pad_token_id=1)
    result = subprocess.run(
        [sys.executable, "-c", HIDDEN_PACKAGE_LOAD, str(folder), json.dumps(prompt)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["module"].startswith("transformers_modules")
    assert payload["tied"]
    assert payload["tokens"] == expected.tolist()


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys(tiny_config):
    """The point of QK-layernorm: scaling the query (and key) projection, as a too-large step would, leaves the
    attention logits, hence the output, unchanged; without it they change."""
    x = torch.randint(0, tiny_config.vocab_size, (2, 12))
    for qk_norm, should_change in ((True, False), (False, True)):
        torch.manual_seed(0)
        model = GPTForCausalLM(GPTConfig(**{**tiny_config.to_dict(), "qk_norm": qk_norm})).eval()
        before = model(x).logits
        with torch.no_grad():
            for block in model.transformer.h:
                c = tiny_config.n_embd
                block.attn.c_attn.weight[: 2 * c] *= 10.0  # queries and keys
                block.attn.c_attn.bias[: 2 * c] *= 10.0
        after = model(x).logits
        assert (not torch.allclose(before, after, atol=1e-4)) == should_change, qk_norm


def test_qk_norm_round_trips_through_from_pretrained_and_is_not_exported_as_gpt2(tiny_config, tmp_path):
    from transformers import AutoModelForCausalLM

    from modeling.weight_conversion import to_gpt2

    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(**{**tiny_config.to_dict(), "qk_norm": True})).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.qk_norm and hasattr(loaded.transformer.h[0].attn, "q_norm")
    x = torch.randint(0, tiny_config.vocab_size, (1, 9))
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
    with pytest.raises(ValueError, match="no query/key LayerNorm"):
        to_gpt2(model)


def test_z_loss_is_palms_term_and_leaves_the_cross_entropy_alone(tiny_model):
    from modeling.loss import next_token_loss

    x = torch.randint(0, 96, (2, 16))
    y = torch.randint(0, 96, (2, 16))
    plain = tiny_model(x, shift_labels=y)
    with_z = tiny_model(x, shift_labels=y, z_loss=1e-4)
    log_z = torch.logsumexp(plain.logits.float(), dim=-1)
    torch.testing.assert_close(with_z.z_loss, 1e-4 * log_z.pow(2).mean())
    torch.testing.assert_close(with_z.loss - with_z.z_loss, next_token_loss(plain.logits, y))
    torch.testing.assert_close(plain.loss, next_token_loss(plain.logits, y))
    assert plain.z_loss is None


def test_activation_checkpointing_gives_the_same_loss_and_gradients(tiny_config):
    """Recomputing each block's activations in the backward pass changes memory, not numbers."""
    x = torch.randint(0, tiny_config.vocab_size, (3, 16))
    results = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = GPTForCausalLM(tiny_config).train()
        if checkpointed:
            model.activation_checkpointing_enable()
        loss = model(x, shift_labels=x, use_cache=False).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (plain_loss, plain), (loss, grads) = results
    torch.testing.assert_close(loss, plain_loss, rtol=0, atol=0)
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], rtol=1e-6, atol=1e-7, msg=name)
