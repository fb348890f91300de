"""What a run measures as it trains, and when (the ``evaluation`` section): the validation loss on fixed tokens,
HellaSwag, and text samples, each every N steps and at the run's last step.

Every process takes part in the validation loss and HellaSwag (each evaluates its share; the sums are reduced).
Samples are generated on the main process, or on every process when the parameters are sharded (each forward's
gathers must match), with their own seeded generator so the training RNG, and an exact resume, is untouched.
"""

from ..cadence import is_due
from ..distributed import runs_here
from .config import EvaluationArguments
from .hellaswag import HellaSwagInLoop
from .sampling import generate_samples
from .validation import validation_loss


class InLoopEvaluation:
    """The evaluation component of a run (module docstring)."""

    def __init__(self, config: EvaluationArguments, val_set, tokenizer, micro_batch_size: int, seq_len: int,
                 seed: int):
        self.config, self.val_set, self.tokenizer = config, val_set, tokenizer
        self.micro_batch_size, self.seq_len, self.seed = micro_batch_size, seq_len, seed
        self.hellaswag = HellaSwagInLoop(config.hellaswag_path, config.hellaswag_limit)

    # -- cadence
    def validation_due(self, step: int, last: bool) -> bool:
        return self.val_set is not None and is_due(step, self.config.eval_every, last=last)

    def hellaswag_due(self, step: int, last: bool) -> bool:
        return is_due(step, self.config.hellaswag_every, last=last)

    def samples_due(self, step: int, last: bool) -> bool:
        return is_due(step, self.config.sample_every, last=last)

    # -- measuring
    def validate(self, model, accelerator) -> dict:
        """``{"eval_loss", "eval_perplexity"}`` on the fixed validation tokens (HF's names, for callbacks)."""
        return validation_loss(model, self.val_set, self.micro_batch_size, self.seq_len, accelerator.device,
                               accelerator.process_index, accelerator.num_processes, self.config.eval_tokens,
                               reduce=accelerator.reduce, autocast=accelerator.autocast)

    def run_hellaswag(self, model, accelerator) -> dict:
        return self.hellaswag(model, self.tokenizer, accelerator)

    def samples(self, model, step: int, is_main: bool) -> list[str]:
        if not runs_here(model, is_main):
            return []
        config = self.config
        return generate_samples(model, self.tokenizer, config.sample_prompt, config.num_samples, config.sample_tokens,
                                seed=self.seed + step)
