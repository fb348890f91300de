"""Publishing from a run (the ``hub`` section of a run's YAML)."""

from dataclasses import dataclass

from ..config_fields import check_types, described, raise_problems


@dataclass
class HubArguments:
    """Pushing the final model (and checkpoints) to the Hugging Face Hub."""

    push_to_hub: str | None = described("Hub repo id (user/name) to push the final model to (token from HF_TOKEN or "
                                        "`hf auth login`, checked before training starts).", default=None)
    push_checkpoints: bool = described("With --push_to_hub, also push every checkpoint to a branch step_N, in the "
                                       "background.", default=False)
    hub_private: bool = described("Create the Hub repository as private.", default=False)

    def __post_init__(self):
        raise_problems("hub arguments", check_types(self))
