"""What a run measures as it trains (the ``evaluation`` section of a run's YAML)."""

from dataclasses import dataclass

from ..config_fields import check_types, described, non_negative, raise_problems


@dataclass
class EvaluationArguments:
    """Validation loss, HellaSwag and text samples during training, and how often."""

    eval_every: int = described("Validation loss every N steps (and at the end); 0 disables.", default=250)
    eval_tokens: int = described("Validation tokens per evaluation (the same tokens every time).", default=10_485_760)
    hellaswag_every: int = described("HellaSwag accuracy every N steps; 0 disables.", default=0)
    hellaswag_path: str | None = described("Local hellaswag_val.jsonl; downloaded when empty and online.",
                                           default=None)
    hellaswag_limit: int | None = described("Evaluate only the first N HellaSwag examples.", default=None)
    sample_every: int = described("Generate text samples every N steps (logged to TensorBoard); 0 disables.",
                                  default=250)
    sample_prompt: str = described("Prompt of the text samples.", default="Hello, I'm a language model,")
    sample_tokens: int = described("New tokens per text sample.", default=32)
    num_samples: int = described("Text samples per sampling step.", default=4)

    def __post_init__(self):
        raise_problems("evaluation arguments", check_types(self))
        problems = non_negative(self, "eval_every", "eval_tokens", "sample_every", "sample_tokens", "num_samples",
                                "hellaswag_every")
        if self.hellaswag_limit is not None and self.hellaswag_limit <= 0:
            problems.append(f"hellaswag_limit must be positive (got {self.hellaswag_limit})")
        if self.sample_every > 0 and (self.num_samples < 1 or self.sample_tokens < 1):
            problems.append(f"sampling every {self.sample_every} steps needs num_samples >= 1 and sample_tokens >= 1 "
                            "(or set sample_every 0)")
        raise_problems("evaluation arguments", problems)
