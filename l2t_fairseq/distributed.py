"""One teacher across fairseq's data-parallel workers.

Every worker trains a replica of the student on its own batches, so every
worker must train it on the same loss: the teacher, its Adam state and the
state ``s_t`` it reads are identical on all of them.  They start identical
(same seed, or the same checkpoint, which fairseq broadcasts from rank 0) and
stay so because every worker takes the same teacher step from the
*averaged* hypergradient and the *summed* BLEU statistics.  These helpers
wrap fairseq's own collectives over its data-parallel group and are the
identity on a single worker.
"""

import hashlib

import torch
from fairseq.distributed import DistributedTimeoutWrapper, LegacyDistributedDataParallel, ModuleProxyWrapper
from fairseq.distributed import utils as distributed_utils
from torch.nn.parallel import DistributedDataParallel

# fairseq's --ddp-backend wrappers; ModuleProxyWrapper forwards attribute lookups, so `hasattr(m, "module")` lies
WRAPPERS = (ModuleProxyWrapper, DistributedTimeoutWrapper, DistributedDataParallel, LegacyDistributedDataParallel)


def unwrap(model):
    """The bare student under fairseq's DDP wrappers: the unroll must not run DDP's gradient hooks."""
    while isinstance(model, WRAPPERS):
        model = model.module
    return model


def _group():
    return distributed_utils.get_data_parallel_group()


def world_size():
    return distributed_utils.get_data_parallel_world_size() if torch.distributed.is_initialized() else 1


def rank():
    return distributed_utils.get_data_parallel_rank() if torch.distributed.is_initialized() else 0


def all_reduce_sum(tensor):
    """``tensor`` summed over the data-parallel workers (in place)."""
    if world_size() > 1:
        distributed_utils.all_reduce(tensor, _group())
    return tensor


def mean_over_workers(value, device):
    """The mean of ``value`` over the workers that have one (``None`` where a worker has none); ``None`` if none has."""
    present = torch.tensor([value if value is not None else 0.0, float(value is not None)], device=device,
                           dtype=torch.float64)
    total, count = all_reduce_sum(present).tolist()
    return total / count if count else None


def all_gather(obj):
    """``[obj of worker 0, obj of worker 1, ...]`` for a small picklable ``obj``."""
    if world_size() > 1:  # (fairseq's all_gather_list allocates on CUDA only)
        gathered = [None] * world_size()
        torch.distributed.all_gather_object(gathered, obj, group=_group())
        return gathered
    return [obj]


def digest(module):
    """A short hash of a module's parameters' bytes: equal digests mean bit-for-bit equal parameters."""
    sha = hashlib.sha1()
    for p in module.parameters():
        sha.update(p.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


def check_consistent(module, what):
    """Every worker's digest of ``module``; fails loudly if they differ (as fairseq does for its gradients)."""
    digests = all_gather(digest(module))
    if len(set(digests)) > 1:
        raise RuntimeError(f"l2t_fairseq: {what} differs between data-parallel workers: digests {digests}")
    return digests
