"""The run's progress: the one object that is the trainer's part of a checkpoint.

It holds where the run stands (``TrainerState``: step, tokens, best validation loss, the headline log history, the
planned last step, which callbacks read), the schedule's re-plan and a cool-down's origin, and saves the state of the
parts it is given (the callbacks, the guards, the noise-scale estimate) by asking each for its own: every part
restores itself, nobody writes another's state. Accelerate pickles ``state_dict()`` into ``custom_checkpoint_N.pkl``
with the model, optimizer, scheduler and data position.
"""

from transformers import TrainerState

from ..optim.schedules import Anchor, anchor_from_dict, anchor_to_dict


class RunProgress:
    """Where the run stands, and the checkpointed state of its parts (module docstring)."""

    def __init__(self, state: TrainerState, parts: dict):
        self.state = state
        self.parts = parts  # name -> an object with state_dict() / load_state_dict(state)
        self.schedule_anchor: Anchor | None = None  # the checkpoint's schedule re-plan, restored with it
        self.cooldown: dict | None = None  # {"step", "steps"}: this run is a cool-down from that step

    @property
    def step(self) -> int:
        return self.state.global_step

    @property
    def at_end(self) -> bool:
        return self.state.global_step >= self.state.max_steps

    def advance(self, tokens: int) -> None:
        self.state.global_step += 1
        self.state.num_input_tokens_seen += tokens

    def record_best(self, loss: float) -> None:
        if self.state.best_metric is None or loss < self.state.best_metric:
            self.state.best_metric, self.state.best_global_step = loss, self.state.global_step

    def state_dict(self) -> dict:
        state = self.state
        out = {"global_step": state.global_step, "tokens_seen": state.num_input_tokens_seen,
               "best_metric": state.best_metric, "best_global_step": state.best_global_step,
               "log_history": list(state.log_history), "schedule_anchor": anchor_to_dict(self.schedule_anchor),
               "cooldown": self.cooldown}
        out.update({name: part.state_dict() for name, part in self.parts.items()})
        return out

    def load_state_dict(self, saved: dict) -> None:
        state = self.state
        state.global_step, state.num_input_tokens_seen = saved["global_step"], saved["tokens_seen"]
        state.best_metric, state.best_global_step = saved["best_metric"], saved["best_global_step"]
        state.log_history = list(saved["log_history"])
        self.schedule_anchor = anchor_from_dict(saved.get("schedule_anchor"))
        self.cooldown = saved.get("cooldown")
        for name, part in self.parts.items():
            if name in saved:
                part.load_state_dict(saved[name])
            elif name == "guards":  # a checkpoint of an earlier version: the guards were callbacks
                part.load_state_dict({**saved.get("callbacks", {}), **saved})
