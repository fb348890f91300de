"""The one next-token loss, tested once against torch's cross_entropy, and its users."""

import pytest
import torch
import torch.nn.functional as F

from modeling.loss import IGNORE_INDEX, next_token_loss, shift_for_next_token


@pytest.fixture
def batch():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    targets = torch.randint(0, 11, (3, 7))
    return logits, targets


def test_mean_sum_and_none_equal_cross_entropy(batch):
    logits, targets = batch
    flat_logits, flat_targets = logits.reshape(-1, 11), targets.reshape(-1)
    torch.testing.assert_close(next_token_loss(logits, targets), F.cross_entropy(flat_logits, flat_targets))
    torch.testing.assert_close(next_token_loss(logits, targets, reduction="sum"),
                               F.cross_entropy(flat_logits, flat_targets, reduction="sum"))
    torch.testing.assert_close(next_token_loss(logits, targets, reduction="none"),
                               F.cross_entropy(flat_logits, flat_targets, reduction="none").view(3, 7))


def test_ignored_targets_do_not_count_and_every_token_weighs_the_same(batch):
    logits, targets = batch
    masked = targets.clone()
    masked[0, 3:] = IGNORE_INDEX  # a row with fewer counted tokens: the mean is over tokens, not over rows
    expected = F.cross_entropy(logits.reshape(-1, 11), masked.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(next_token_loss(logits, masked), expected)
    per_position = next_token_loss(logits, masked, reduction="none")
    assert (per_position[0, 3:] == 0).all()
    torch.testing.assert_close(per_position.sum() / (masked != IGNORE_INDEX).sum(), expected)


def test_low_precision_logits_are_scored_in_float32(batch):
    logits, targets = batch
    loss = next_token_loss(logits.bfloat16(), targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.bfloat16().float().reshape(-1, 11), targets.reshape(-1)))


def test_bad_reduction_is_refused(batch):
    with pytest.raises(ValueError, match="reduction"):
        next_token_loss(*batch, reduction="avg")


def test_shift_for_next_token_drops_the_last_position():
    labels = torch.tensor([[5, 6, 7, 8]])
    assert shift_for_next_token(labels).tolist() == [[6, 7, 8, IGNORE_INDEX]]


def test_the_model_forward_uses_it(tiny_model):
    x = torch.randint(0, 96, (2, 9))
    y = torch.randint(0, 96, (2, 9))
    logits = tiny_model(x).logits
    torch.testing.assert_close(tiny_model(x, shift_labels=y).loss, next_token_loss(logits, y))
    torch.testing.assert_close(tiny_model(x, labels=x).loss, next_token_loss(logits, shift_for_next_token(x)))
    summed = next_token_loss(logits, y, reduction="sum")
    torch.testing.assert_close(tiny_model(x, shift_labels=y, num_items_in_batch=40).loss, summed / 40)
