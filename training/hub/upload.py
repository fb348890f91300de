"""Uploading a staged folder to the Hugging Face Hub, and the checks that run before any work (token, repo id).

huggingface_hub's HTTP client waits forever by default: against a server that accepts a connection and never
answers, an upload hangs. Every request made here has a timeout (``DEFAULT_TIMEOUT`` seconds to connect and
between bytes; a slow but live upload is not cut off), and any failure to reach the Hub, whatever the HTTP
library's exception type, becomes a ``HubError`` naming the endpoint.
"""

from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

DEFAULT_TIMEOUT = 60.0
# Exception classes from these packages are network failures (huggingface_hub 2.x uses httpx2 and httpcore2).
NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3", "socket", "ssl", "h11", "anyio")


class HubError(RuntimeError):
    """Publishing cannot proceed; the message says why and what to do (never contains the token)."""

    user_error = True  # scripts report it as "error: ..." (training/errors.py)


def require_token(token: str | None = None) -> str:
    """The token from the argument or the standard places (HF_TOKEN, ``hf auth login``), else a clear error."""
    token = token or get_token()
    if not token:
        raise HubError("No Hugging Face token found: run `hf auth login` or set the HF_TOKEN environment variable "
                       "(a token with write access), then retry.")
    return token


def check_repo_id(repo_id: str) -> str:
    """``user/name`` as the Hub accepts it, else a clear error (checked before staging, dry runs included)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubError(f"--repo_id {repo_id!r} is not a valid Hub repository id ({error}); use user/name with "
                       "letters, digits, '-', '_' and '.'.") from error
    if repo_id.count("/") != 1:
        raise HubError(f"--repo_id {repo_id!r} must name an owner and a repository: user/name.")
    return repo_id


def use_timeouts(seconds: float = DEFAULT_TIMEOUT) -> None:
    """Make huggingface_hub's HTTP client give up on a silent server after ``seconds`` (connect, and between
    bytes of a response), through its documented client-factory hook."""
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    def factory():
        client = default_client_factory()
        client.timeout = seconds
        return client

    set_client_factory(factory)


def is_network_error(error: BaseException) -> bool:
    """A failure to reach the server (refused, unresolvable, timed out, cut off): not an HTTP error response."""
    if isinstance(error, HfHubHTTPError):
        return False
    if isinstance(error, (OSError, ConnectionError, TimeoutError)):
        return True
    return any(cls.__module__.startswith(NETWORK_MODULES) for cls in type(error).__mro__)


def push_folder(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                api: HfApi | None = None, token: str | None = None, commit_message: str = "Upload model",
                run_as_future: bool = False, timeout: float = DEFAULT_TIMEOUT):
    """``create_repo`` (and the branch) then ``upload_folder``; network failures and timeouts become a HubError."""
    token = require_token(token)
    check_repo_id(repo_id)
    use_timeouts(timeout)
    api = api or HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, repo_type="model",
                                 commit_message=commit_message, run_as_future=run_as_future)
    except HfHubHTTPError as error:
        raise HubError(f"The Hub refused the upload to {repo_id}: {error}") from error
    except Exception as error:
        if not is_network_error(error):
            raise
        raise HubError(f"Could not reach the Hugging Face Hub at {constants.ENDPOINT} to upload {repo_id} "
                       f"({type(error).__name__}: {error or 'no answer'}; each request waits at most {timeout:g} s). "
                       "Check the connection (or HF_ENDPOINT / HF_HUB_OFFLINE) and retry.") from error
