"""Pushing to the Hub from a training run: the final model at the end, checkpoints (optionally) as they are saved.

Checkpoint pushes are best effort: they run in the background, and any failure (network, Hub, staging) is
reported as a warning and retried with the next checkpoint; training never stops for them. The final push runs
after ``final/`` is safely on disk; its failure is reported clearly (a ``HubError``) and can be redone with
``scripts/push_to_hub.py``. Uploads are assembled in a temporary folder outside the run (a copy of the logs
inside ``runs/`` would show up in TensorBoard as another run) and removed once pushed. The staging code (and with it the analysis and matplotlib) is imported only when a
push actually runs.
"""

import shutil
import tempfile
import warnings
from pathlib import Path

from huggingface_hub import HfApi
from transformers import TrainerCallback

from ..layout import RunLayout, checkpoint_name
from .upload import HubError, check_repo_id, push_folder, require_token


class HubPushCallback(TrainerCallback):
    """Pushes the final model at the end of training and, optionally, each checkpoint to a ``step_N`` branch
    without blocking training (``upload_folder(run_as_future=True)``)."""

    def __init__(self, repo_id: str, push_checkpoints: bool = False, private: bool = False,
                 api: HfApi | None = None, token: str | None = None):
        self.repo_id, self.push_checkpoints, self.private, self.api = repo_id, push_checkpoints, private, api
        check_repo_id(repo_id)  # fail before any training is done
        self.token = require_token(token)
        self.futures: dict[int, tuple[object, Path]] = {}  # step -> (upload future, its staging folder)
        self.failed_steps: list[int] = []

    def on_save(self, args, state, control, checkpoint_dir=None, **kwargs):
        if not self.push_checkpoints or not state.is_world_process_zero or checkpoint_dir is None:
            return
        self._collect_finished()
        try:
            self.futures[state.global_step] = self._push_checkpoint(args.output_dir, state.global_step)
        except Exception as error:  # noqa: BLE001 - any failure of a background push must leave training running
            self._failed(state.global_step, error)

    def _push_checkpoint(self, output_dir: str, step: int):
        from .staging import stage_upload

        name, layout = checkpoint_name(step), RunLayout(output_dir)
        staging = Path(tempfile.mkdtemp(prefix=f"gpt2-pretrain-hub-{name}-"))
        try:
            staged = stage_upload(layout.checkpoint_model_dir(step), staging / name, self.repo_id,
                                  run_dir=layout.root, with_gpt2_export=False)
            future = push_folder(staged, self.repo_id, self.private, revision=name, api=self.api, token=self.token,
                                 commit_message=f"Checkpoint at step {step}", run_as_future=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return future, staging

    def _failed(self, step: int, error: BaseException) -> None:
        self.failed_steps.append(step)
        warnings.warn(f"Pushing the step-{step} checkpoint to {self.repo_id} failed ({type(error).__name__}: {error});"
                      " training continues and the next checkpoint will be pushed.", stacklevel=1)

    def _collect_finished(self, wait: bool = False) -> None:
        for step, (future, staging) in list(self.futures.items()):
            if hasattr(future, "done") and not (wait or future.done()):
                continue
            del self.futures[step]
            try:
                if hasattr(future, "result"):
                    future.result()
            except Exception as error:  # noqa: BLE001
                self._failed(step, error)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from .staging import stage_upload

        self._collect_finished(wait=True)
        layout = RunLayout(args.output_dir)
        staging = Path(tempfile.mkdtemp(prefix="gpt2-pretrain-hub-final-"))
        try:
            staged = stage_upload(layout.final_dir, staging / layout.final_dir.name, self.repo_id, run_dir=layout.root)
            push_folder(staged, self.repo_id, self.private, api=self.api, token=self.token,
                        commit_message=f"Final model after {state.global_step} steps")
        except Exception as error:
            raise HubError(f"Training finished and the final model is saved in {layout.final_dir}, but pushing it "
                           f"to {self.repo_id} failed ({type(error).__name__}: {error}). Push it again with: "
                           f"python scripts/push_to_hub.py {layout.final_dir} --repo_id {self.repo_id}") from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
