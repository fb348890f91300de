import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from modeling.tokenization import TiktokenGPT2
from training.data import preparation
from training.data.preparation import CorpusError, PrepareConfig, prepare
from training.data.shards import ShardError, find_shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(out, files, **kwargs):
    kwargs.setdefault("shard_tokens", 20_000)
    kwargs.setdefault("val_tokens", 8_000)
    return PrepareConfig(output_dir=str(out), files=[str(f) for f in files], progress=False, **kwargs)


def _all_tokens(out):
    return np.concatenate([np.load(p) for p in find_shards(out, "val") + find_shards(out, "train")])


def test_round_trip_decodes_to_documents_separated_by_eot(tmp_path, fineweb_path):
    meta = prepare(_config(tmp_path / "out", [fineweb_path]))
    texts = [json.loads(line)["text"] for line in fineweb_path.read_text().splitlines()]
    tokens = _all_tokens(tmp_path / "out")
    assert tokens.dtype == np.uint16
    eot = 50256
    assert tokens[0] == eot and int((tokens == eot).sum()) == len(texts) == meta["documents"]
    tok = TiktokenGPT2()
    decoded = tok.decode(tokens.tolist()).split("<|endoftext|>")[1:]
    assert decoded == texts
    assert meta["tokens"]["val"] == 8_000
    assert meta["tokens"]["val"] + meta["tokens"]["train"] == len(tokens)
    assert all(len(np.load(p)) == 20_000 for p in find_shards(tmp_path / "out", "train")[:-1])
    assert meta["complete"] and meta["tokenizer"]["encoding"] == "gpt2"


def test_shards_are_the_plain_packing_whatever_the_batching(tmp_path, shakespeare_path):
    """The fast path (tiktoken buffers, a chunk packed at once, shards cut inside chunks) writes exactly what
    encoding each document with encode_ordinary, prefixing EOT and cutting every shard_tokens would."""
    paragraphs = [p for p in shakespeare_path.read_text().split("\n\n") if p.strip()][:400]
    texts = [*paragraphs[:150], "", "a literal <|endoftext|> stays text", *paragraphs[150:]]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    encoding = TiktokenGPT2()
    expected = np.array([t for text in texts for t in [encoding.eot_token_id, *encoding.encode(text)]], np.uint16)
    for workers, documents, characters in ((1, 1024, 1 << 20), (2, 3, 500), (2, 1, 1)):
        out = tmp_path / f"out_{workers}_{documents}_{characters}"
        meta = prepare(_config(out, [corpus], shard_tokens=997, val_tokens=501, num_workers=workers,
                               chunk_documents=documents, chunk_characters=characters))
        assert np.array_equal(_all_tokens(out), expected)
        assert [len(np.load(p)) for p in find_shards(out, "val") + find_shards(out, "train")][:3] == [501, 997, 997]
        assert meta["documents"] == len(texts)


def test_names_and_format_readable_by_build_nanogpt(tmp_path, shakespeare_path):
    prepare(_config(tmp_path, [shakespeare_path], name="shakespeare", shard_tokens=100_000, val_tokens=30_000))
    names = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert names[0] == "shakespeare_train_000001.npy" and names[-1] == "shakespeare_val_000000.npy"
    # build-nanogpt's load_tokens: np.load then astype(int32)
    assert np.load(tmp_path / "shakespeare_val_000000.npy").astype(np.int32).shape == (30_000,)
    assert int((_all_tokens(tmp_path) == 50256).sum()) == 1  # txt_split=file: one document


def test_max_tokens_stops_early(tmp_path, fineweb_path):
    meta = prepare(_config(tmp_path, [fineweb_path], max_tokens=25_000))
    assert meta["tokens"]["val"] + meta["tokens"]["train"] == 25_000


def _crash_after(monkeypatch, shards_before_crash):
    real = preparation.write_shard_atomic
    calls = {"n": 0}

    def flaky(path, tokens):
        if calls["n"] == shards_before_crash:
            with open(str(path) + ".tmp", "wb") as handle:  # a half-written temporary file, as a crash leaves
                handle.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("simulated crash")
        calls["n"] += 1
        real(path, tokens)

    monkeypatch.setattr(preparation, "write_shard_atomic", flaky)


def test_interrupted_preparation_resumes_byte_identical(tmp_path, fineweb_path, monkeypatch):
    prepare(_config(tmp_path / "clean", [fineweb_path]))
    _crash_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        prepare(_config(tmp_path / "crashed", [fineweb_path]))
    assert len(find_shards(tmp_path / "crashed", "train")) == 1  # val + one train shard survived
    assert not find_shards(tmp_path / "crashed", "train")[0].name.endswith(".tmp")
    monkeypatch.undo()
    prepare(_config(tmp_path / "crashed", [fineweb_path]))
    clean = sorted(p.name for p in (tmp_path / "clean").glob("*.npy"))
    assert clean == sorted(p.name for p in (tmp_path / "crashed").glob("*.npy"))
    for name in clean:
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "crashed" / name).read_bytes(), name
    assert not list((tmp_path / "crashed").glob("*.tmp"))


SLOW_PREPARE = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from training.data import preparation
    real = preparation.write_shard_atomic
    def slow(path, tokens):  # a slow disk, so the parent can kill us between shards
        real(path, tokens)
        time.sleep(0.3)
    preparation.write_shard_atomic = slow
    config = preparation.PrepareConfig(output_dir=sys.argv[2], files=[sys.argv[3]], shard_tokens=5000,
                                       val_tokens=3000, txt_split="paragraph", progress=False)
    preparation.prepare(config)
    """
)


def test_sigkill_mid_preparation_then_resume_is_byte_identical(tmp_path, shakespeare_path):
    settings = dict(shard_tokens=5000, val_tokens=3000, txt_split="paragraph")
    prepare(_config(tmp_path / "clean", [shakespeare_path], **settings))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE, REPO, str(killed), str(shakespeare_path)],
                            env={**os.environ})
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.glob("*.npy"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(killed.glob("*.npy")))
    total = len(list((tmp_path / "clean").glob("*.npy")))
    assert 3 <= written < total, "the kill should land mid-way"
    prepare(_config(killed, [shakespeare_path], **settings))
    for path in (tmp_path / "clean").glob("*.npy"):
        assert path.read_bytes() == (killed / path.name).read_bytes(), path.name


def test_completed_output_is_not_redone_and_other_settings_are_refused(tmp_path, fineweb_path):
    first = prepare(_config(tmp_path, [fineweb_path]))
    stamp = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    assert prepare(_config(tmp_path, [fineweb_path])) == first
    assert stamp == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    with pytest.raises(CorpusError, match="other settings"):
        prepare(_config(tmp_path, [fineweb_path], shard_tokens=30_000))


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError, match="does-not-exist.jsonl does not exist"):
        prepare(_config(tmp_path / "out", [tmp_path / "does-not-exist.jsonl"]))


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="empty.jsonl produced no tokens"):
        prepare(_config(tmp_path / "out", [empty]))


def test_corpus_smaller_than_validation_shard(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("just a few words")
    with pytest.raises(CorpusError, match="lower --val_tokens"):
        prepare(_config(tmp_path / "out", [small]))


def test_bad_json_line_names_file_and_line_or_is_skipped(tmp_path, fineweb_path):
    lines = fineweb_path.read_text().splitlines()[:20]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:4] + ["{not json"] + lines[4:9] + ['{"body": "no text"}'] + lines[9:]) + "\n")
    with pytest.raises(CorpusError, match=r"bad.jsonl:5: not valid JSON.*--skip_bad_lines"):
        prepare(_config(tmp_path / "a", [bad], val_tokens=1000))
    with pytest.raises(CorpusError, match=r"fixed.jsonl:11: no string field 'text'.*body.*--text_field"):
        prepare(_config(tmp_path / "b", [_without_line(bad, 5)], val_tokens=1000))
    meta = prepare(_config(tmp_path / "c", [bad], val_tokens=1000, skip_bad_lines=True))
    assert meta["skipped_lines"] == 2 and meta["documents"] == 20


def _without_line(path, number):
    lines = path.read_text().splitlines()
    fixed = path.with_name("fixed.jsonl")
    fixed.write_text("\n".join(lines[: number - 1] + ['{"text": "replacement"}'] + lines[number:]) + "\n")
    return fixed


def test_unwritable_output_dir(tmp_path, fineweb_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CorpusError, match="Cannot write to output directory .*file/sub.*--output_dir"):
        prepare(_config(blocker / "sub", [fineweb_path]))


def test_parquet_and_text_field(tmp_path, fineweb_path):
    import datasets

    texts = [json.loads(line)["text"] for line in fineweb_path.read_text().splitlines()[:30]]
    datasets.Dataset.from_dict({"content": texts}).to_parquet(str(tmp_path / "c.parquet"))
    meta = prepare(_config(tmp_path / "out", [tmp_path / "c.parquet"], text_field="content", val_tokens=2000))
    assert meta["documents"] == 30
    with pytest.raises(CorpusError, match="no column 'text'.*--text_field"):
        prepare(_config(tmp_path / "out2", [tmp_path / "c.parquet"], val_tokens=2000))


def test_prepare_script_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "prepare_data.py"), "--files",
                             str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "missing.txt does not exist" in result.stderr and "Traceback" not in result.stderr


def test_binary_data_is_refused_as_text(tmp_path):
    noise = tmp_path / "noise.txt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(CorpusError, match=r"noise.txt is not UTF-8 text: \d+% of its characters cannot be decoded"):
        prepare(PrepareConfig(output_dir=str(tmp_path / "out"), files=[str(noise)], progress=False))


def test_a_few_bad_bytes_are_replaced_with_a_warning(tmp_path):
    text = tmp_path / "mostly.txt"
    text.write_bytes(("hello world. " * 500).encode() + b"\xff" + b" the end")
    with pytest.warns(UserWarning, match="1 undecodable byte sequence"):
        meta = prepare(PrepareConfig(output_dir=str(tmp_path / "out"), files=[str(text)], shard_tokens=500,
                                     val_tokens=100, progress=False))
    assert meta["tokens"]["train"] > 0


def test_invalid_utf8_in_jsonl_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: not valid UTF-8"):
        prepare(PrepareConfig(output_dir=str(tmp_path / "out"), files=[str(bad)], progress=False))


def test_corrupt_meta_on_rerun_names_the_file(tmp_path, shakespeare_path):
    config = PrepareConfig(output_dir=str(tmp_path / "out"), files=[str(shakespeare_path)], shard_tokens=100_000,
                           val_tokens=8192, max_tokens=150_000, progress=False)
    prepare(config)
    (tmp_path / "out" / "meta.json").write_text('{"version": 1, "compl')
    with pytest.raises(ShardError, match=r"meta.json is not valid JSON"):
        prepare(config)
