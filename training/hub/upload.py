"""Uploading a staged folder to the Hugging Face Hub, and the token check that runs before any work."""

from pathlib import Path

from huggingface_hub import HfApi, get_token


class HubError(RuntimeError):
    """Publishing cannot proceed; the message says why and what to do (never contains the token)."""


def require_token(token: str | None = None) -> str:
    """The token from the argument or the standard places (HF_TOKEN, ``hf auth login``), else a clear error."""
    token = token or get_token()
    if not token:
        raise HubError("No Hugging Face token found: run `hf auth login` or set the HF_TOKEN environment variable "
                       "(a token with write access), then retry.")
    return token


def push_folder(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                api: HfApi | None = None, token: str | None = None, commit_message: str = "Upload model",
                run_as_future: bool = False):
    """``create_repo`` (and the branch) then ``upload_folder``; network failures become a clear HubError."""
    token = require_token(token)
    api = api or HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, repo_type="model",
                                 commit_message=commit_message, run_as_future=run_as_future)
    except (OSError, ConnectionError) as error:  # requests' and httpx's connection errors derive from these
        raise HubError(f"Could not reach the Hugging Face Hub to upload {repo_id} ({type(error).__name__}); check "
                       "the connection (or HF_HUB_OFFLINE) and retry.") from error
