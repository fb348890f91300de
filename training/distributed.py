"""What changes when parameters are sharded (FSDP2: ``fully_shard`` turns them into DTensors).

Under DDP every process holds whole tensors, so statistics, sampling and saving can run on the main process
alone. Under FSDP each process holds a shard: a whole tensor exists only after a gather, and a gather is a
collective that every process must enter. The helpers here give whole tensors and whole state dicts in both
cases; callers run them on every process when ``is_sharded`` and keep the results on the main one.
"""

import torch

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch builds without distributed support
    DTensor = ()


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether any parameter is a DTensor (FSDP2), i.e. whole tensors need a collective gather."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: gathered from all processes for a DTensor (a collective), the tensor itself otherwise."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's whole state dict on CPU. Sharded: gathered with torch's distributed-checkpoint API (every process
    must call it; what Accelerate's ``get_state_dict`` does for FSDP2). Not sharded: the plain state dict."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def runs_here(model: torch.nn.Module, is_main_process: bool) -> bool:
    """Whether this process takes part in a whole-tensor computation: the main process always, the others only
    when parameters are sharded (they must join the gathers)."""
    return is_main_process or is_sharded(model)
