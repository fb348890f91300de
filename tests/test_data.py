import numpy as np
import pytest
import torch

from training.data.loaders import DistributedTokenLoader, ValidationSet
from training.data.shards import ShardError, write_shard_atomic


def _make_shards(folder, lengths, eot_every=7, start=0):
    """Synthetic train shards holding consecutive integers (mod 50000), with an EOT every few tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    value = start
    for index, length in enumerate(lengths, start=1):
        tokens = (np.arange(value, value + length) % 50000).astype(np.uint16)
        tokens[(np.arange(value, value + length) % eot_every) == 0] = 50256
        write_shard_atomic(folder / f"t_train_{index:06d}.npy", tokens)
        value += length
    return folder


def _stream(folder):
    return np.concatenate([np.load(p) for p in sorted(folder.glob("*_train_*.npy"))]).astype(np.int64)


def test_single_rank_batches_are_the_stream_shifted_by_one(tmp_path):
    folder = _make_shards(tmp_path, [50, 33, 61])
    stream = _stream(folder)
    loader = DistributedTokenLoader(folder, batch_size=2, seq_len=5)
    for step in range(10):
        x, y = loader.next_batch()
        assert x.shape == y.shape == (2, 5) and x.dtype == torch.int64
        start = (step * 10) % len(stream)
        idx = (np.arange(start, start + 11)) % len(stream)  # wraps into the next epoch
        assert x.flatten().tolist() == stream[idx[:-1]].tolist()
        assert y.flatten().tolist() == stream[idx[1:]].tolist()


def test_two_ranks_see_every_token_of_an_epoch_exactly_once_across_shard_boundaries(tmp_path):
    folder = _make_shards(tmp_path, [37, 101, 64, 29])  # boundaries fall mid-batch
    stream = _stream(folder)
    B, T = 3, 4
    ranks = [DistributedTokenLoader(folder, B, T, process_index=r, num_processes=2) for r in range(2)]
    seen = []
    steps = len(stream) // (2 * B * T) + 1
    for _ in range(steps):
        for loader in ranks:
            x, y = loader.next_batch()
            seen.append(x.flatten())
            assert torch.equal(y.flatten()[:-1], x.flatten()[1:])
    seen = torch.cat(seen).numpy()
    assert seen[: len(stream)].tolist() == stream.tolist()  # in order, nothing dropped or repeated
    assert seen[len(stream):].tolist() == stream[: len(seen) - len(stream)].tolist()  # then epoch 2 begins
    assert ranks[0].epoch == 1


def test_resume_yields_the_same_next_batches(tmp_path):
    folder = _make_shards(tmp_path, [40, 55, 70])
    for shuffle in (False, True):
        full = DistributedTokenLoader(folder, 2, 8, process_index=1, num_processes=2, shuffle=shuffle, seed=3)
        expected = [full.next_batch() for _ in range(25)]
        first = DistributedTokenLoader(folder, 2, 8, process_index=1, num_processes=2, shuffle=shuffle, seed=3)
        for _ in range(9):
            first.next_batch()
        state = first.state_dict()
        resumed = DistributedTokenLoader(folder, 2, 8, process_index=1, num_processes=2, shuffle=shuffle, seed=3)
        resumed.load_state_dict(state)
        for step in range(9, 25):
            x, y = resumed.next_batch()
            assert torch.equal(x, expected[step][0]) and torch.equal(y, expected[step][1])


def test_resume_with_other_data_settings_is_refused(tmp_path):
    folder = _make_shards(tmp_path, [40, 55])
    state = DistributedTokenLoader(folder, 2, 8, shuffle=True, seed=1).state_dict()
    with pytest.raises(ValueError, match="same data settings"):
        DistributedTokenLoader(folder, 2, 8, shuffle=True, seed=2).load_state_dict(state)


def test_shuffling_permutes_shards_and_documents_per_epoch_reproducibly(tmp_path):
    folder = _make_shards(tmp_path, [70, 70, 70, 70])
    stream = _stream(folder)
    per_epoch = len(stream) // 10

    def two_epochs(seed):
        loader = DistributedTokenLoader(folder, 1, 10, shuffle=True, seed=seed)
        return torch.cat([loader.next_batch()[0].flatten() for _ in range(2 * per_epoch)]).numpy()

    a, b, c = two_epochs(0), two_epochs(0), two_epochs(1)
    assert np.array_equal(a, b)  # same seed, same order
    assert not np.array_equal(a, c)
    epoch0, epoch1 = a[:per_epoch * 10], a[per_epoch * 10:]
    assert not np.array_equal(epoch0, stream[: len(epoch0)])  # order changed
    assert not np.array_equal(epoch0, epoch1)  # and differs between epochs
    full = DistributedTokenLoader(folder, 1, len(stream) - 1, shuffle=True, seed=0).next_batch()
    epoch_tokens = torch.cat([full[0].flatten(), full[1].flatten()[-1:]]).numpy()
    assert sorted(epoch_tokens.tolist()) == sorted(stream.tolist())  # a permutation of the epoch's tokens
    assert (epoch_tokens == 50256).sum() == (stream == 50256).sum()


def test_shard_validation_errors_name_the_shard(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    np.save(folder / "x_train_000001.npy", np.arange(10, dtype=np.int32))
    with pytest.raises(ShardError, match="x_train_000001.npy has dtype int32"):
        DistributedTokenLoader(folder, 1, 4)
    np.save(folder / "x_train_000001.npy", np.zeros(0, dtype=np.uint16))
    with pytest.raises(ShardError, match="x_train_000001.npy is empty"):
        DistributedTokenLoader(folder, 1, 4)
    np.save(folder / "x_train_000001.npy", np.full(10, 50256, dtype=np.uint16))
    with pytest.raises(ShardError, match="vocab_size 1000: x_train_000001.npy \\(max id 50256\\)"):
        DistributedTokenLoader(folder, 1, 4, vocab_size=1000)
    (folder / "x_train_000001.npy").write_bytes(b"garbage")
    with pytest.raises(ShardError, match="x_train_000001.npy is not a readable .npy"):
        DistributedTokenLoader(folder, 1, 4)
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        DistributedTokenLoader(tmp_path / "nowhere", 1, 4)
    with pytest.raises(ShardError, match="No training shards"):
        DistributedTokenLoader(tmp_path, 1, 4)


def test_validation_batches_are_fixed_and_split_across_ranks(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16)
    write_shard_atomic(tmp_path / "t_val_000000.npy", tokens)
    val = ValidationSet(tmp_path, max_tokens=500)
    one = list(val.batches(4, 16))
    again = list(val.batches(4, 16))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, again))
    covered = torch.cat([x.flatten() for x, _ in one])
    assert covered.tolist() == list(range(len(covered))) and len(covered) == val.num_tokens(16) == 496
    ranks = [list(val.batches(4, 16, r, 2)) for r in range(2)]
    merged = sorted(torch.cat([x.flatten() for part in ranks for x, _ in part]).tolist())
    assert merged == covered.tolist()
    assert len(ranks[0]) == 4 and len(ranks[1]) == 4
    with pytest.raises(ShardError, match="fewer than seq_len"):
        list(ValidationSet(tmp_path, max_tokens=10).batches(1, 64))


def test_every_shard_is_checked_at_start_up_not_when_reached(tmp_path):
    folder = _make_shards(tmp_path / "ids", [40, 40, 40])
    bad = np.full(40, 7, dtype=np.uint16)
    bad[-1] = 60000  # the last shard: reached only after many steps
    write_shard_atomic(folder / "t_train_000003.npy", bad)
    with pytest.raises(ShardError, match="1 shard\\(s\\) hold token ids >= the model's vocab_size 50304: "
                                         "t_train_000003.npy \\(max id 60000\\)"):
        DistributedTokenLoader(folder, 1, 4, vocab_size=50304)


def test_largest_ids_come_from_meta_when_preparation_recorded_them(tmp_path, shakespeare_shards):
    from training.data.shards import find_shards, largest_token_ids, read_meta

    meta = read_meta(shakespeare_shards)
    assert all("max_token_id" in shard for shard in meta["shards"])
    paths = find_shards(shakespeare_shards, "train")
    found = largest_token_ids(paths)
    assert found == {p: int(np.load(p).max()) for p in paths}


def test_many_processes_can_probe_one_output_folder_at_once(tmp_path):
    """Two ranks of evaluate_checkpoints.py probed one folder with one probe name: one deleted the other's probe and
    a writable folder was reported as "cannot write there". Probes are per process and thread."""
    import concurrent.futures

    from training.data.shards import make_writable_dir

    def probe_many(_):
        for _ in range(300):
            make_writable_dir(tmp_path / "out")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(probe_many, range(8)))  # re-raises the first FileNotFoundError, if any
    assert not list((tmp_path / "out").iterdir())  # no probe left behind

