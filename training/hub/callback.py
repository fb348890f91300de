"""Pushing to the Hub from a training run: the final model at the end, checkpoints (optionally) as they are saved.

The staging code (and with it the analysis and matplotlib) is imported only when a push actually runs.
"""

from huggingface_hub import HfApi
from transformers import TrainerCallback

from ..layout import RunLayout, checkpoint_name
from .upload import push_folder, require_token


class HubPushCallback(TrainerCallback):
    """Pushes the final model at the end of training and, optionally, each checkpoint to a ``step_N`` branch
    without blocking training (``upload_folder(run_as_future=True)``)."""

    def __init__(self, repo_id: str, push_checkpoints: bool = False, private: bool = False,
                 api: HfApi | None = None, token: str | None = None):
        self.repo_id, self.push_checkpoints, self.private, self.api = repo_id, push_checkpoints, private, api
        self.token = require_token(token)  # fail before any training is done
        self.futures = []

    def on_save(self, args, state, control, checkpoint_dir=None, **kwargs):
        if not self.push_checkpoints or not state.is_world_process_zero or checkpoint_dir is None:
            return
        from .staging import stage_upload

        name, layout = checkpoint_name(state.global_step), RunLayout(args.output_dir)
        staged = stage_upload(layout.checkpoint_model_dir(state.global_step), layout.hub_staging_dir / name,
                              self.repo_id, run_dir=layout.root, with_gpt2_export=False)
        self.futures.append(push_folder(staged, self.repo_id, self.private, revision=name,
                                        api=self.api, token=self.token,
                                        commit_message=f"Checkpoint at step {state.global_step}", run_as_future=True))

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from .staging import stage_upload

        for future in self.futures:
            if hasattr(future, "result"):
                future.result()
        layout = RunLayout(args.output_dir)
        staged = stage_upload(layout.final_dir, layout.hub_staging_dir / layout.final_dir.name,
                              self.repo_id, run_dir=layout.root)
        push_folder(staged, self.repo_id, self.private, api=self.api, token=self.token,
                    commit_message=f"Final model after {state.global_step} steps")
