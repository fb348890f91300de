"""Where a run's tokens come from (the ``data`` section of a run's YAML)."""

from dataclasses import dataclass

from ..config_fields import check_types, described, positive, raise_problems


@dataclass
class DataArguments:
    """Where tokens come from."""

    data: str | None = described(
        "Training data: a folder of token shards (scripts/prepare_data.py), or a corpus (.txt/.jsonl/.json/"
        ".parquet file or folder) that is tokenized into <output_dir>/data on the fly.", default=None)
    download_url: str | None = described(
        "When no --data is given, download this text corpus (cpu-tiny: tiny shakespeare) and use it.", default=None)
    text_field: str = described("Text field of JSON records / parquet column when preparing on the fly.",
                                default="text")
    val_tokens: int = described("Tokens of the validation shard made when preparing on the fly.", default=100_000)
    shard_tokens: int = described("Tokens per shard made when preparing on the fly.", default=10_000_000)
    shuffle: bool = described("Permute shard order and documents within shards every epoch (from data_seed).",
                              default=False)
    data_seed: int = described("Seed of the shuffling.", default=1337)

    def __post_init__(self):
        raise_problems("data arguments", check_types(self))
        raise_problems("data arguments", positive(self, "val_tokens", "shard_tokens"))
