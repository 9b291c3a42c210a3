"""Data-parallel training of one potential on several processes (``torch.distributed``), as ``torchrun`` starts them.

``torchrun --nproc_per_node N -m ml4ms potential fit ...`` (or ``--nproc N`` of that command, which starts
torchrun itself) runs N copies of the command; :func:`process_group` finds them through the variables torchrun
sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) and joins them in a process group: gloo on the CPU, NCCL on
CUDA GPUs (one per process on a node, by ``LOCAL_RANK``). Every process reads the data, draws the same split and
the same shuffles, and starts from the same weights; then every global batch of ``batch_size`` structures (the
batch a single process would take) is shared out (:meth:`Ranks.share`), each process differentiates the loss of
its share weighted by the size of the whole batch, and the gradients are summed over the processes
(:meth:`Ranks.sum_gradients`), so that every process takes the same Adam step as one process would on the whole
batch, to rounding. Validation errors are summed the same way; decisions that read a clock (the time limit, the
second stage) are rank 0's, so the processes never part. Only rank 0 writes checkpoints, the potential and the
progress bar; a checkpoint holds nothing of the processes that wrote it, so a run resumes on any number of them.

This is the explicit form of what :class:`torch.nn.parallel.DistributedDataParallel` does (one all-reduce of the
gradients per step): the loss holds forces, the derivatives of the energies, and the module is never called
through a wrapper's ``forward``.
"""

import atexit
import dataclasses
import os

import numpy as np

from ..batch import _torch, torch_device

#: the variables torchrun sets in every process it starts
WORLD_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place among the processes training one potential (one process: rank 0 of 1).

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of processes.
    device : torch.device or None
        Where the sums are taken (NCCL needs CUDA tensors); None on the CPU.

    Examples
    --------
    >>> ranks = Ranks(rank=1, size=2)
    >>> ranks.share(np.arange(5)).tolist(), ranks.main
    ([1, 3], False)
    >>> Ranks().sum([1.5, 2.0]).tolist()
    [1.5, 2.0]
    """

    rank: int = 0
    size: int = 1
    device: object = None

    @property
    def main(self):
        """Rank 0: the process that writes."""
        return self.rank == 0

    def share(self, indices, owner=None):
        """This process's structures of a global batch ``indices``.

        Every ``size``-th structure from the ``rank``-th (shares differ by one structure at most), or, with
        ``owner`` (the rank that holds each structure's precomputed data, indexed by structure), those it holds.
        """
        indices = np.asarray(indices)
        if owner is not None:
            return indices[owner[indices] == self.rank]
        return indices[self.rank::self.size]

    def sum(self, values):
        """``values`` (floats) summed over the processes, in float64."""
        values = np.asarray(values, dtype=np.float64)
        if self.size == 1:
            return values
        torch = _torch()
        buffer = torch.as_tensor(values, device=self.device)
        torch.distributed.all_reduce(buffer)
        return buffer.cpu().numpy()

    def agree(self, flag):
        """Rank 0's ``flag``, on every process: decisions that read a clock are taken once."""
        if self.size == 1:
            return bool(flag)
        torch = _torch()
        buffer = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(buffer, 0)
        return bool(buffer.item())

    def sum_gradients(self, params):
        """Sum the gradients of ``params`` over the processes, in place, in one all-reduce.

        A parameter that no process's share reached (an element absent from the whole batch) keeps no gradient,
        as in one process, so Adam leaves it and its moments alone.
        """
        if self.size == 1:
            return
        torch = _torch()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        reached = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
        buffer = torch.cat([g.reshape(-1) for g in grads] + [reached])
        torch.distributed.all_reduce(buffer)
        start = 0
        for p, g in zip(params, grads):
            p.grad = buffer[start:start + g.numel()].view_as(p).clone()
            start += g.numel()
        for p, n in zip(params, buffer[start:].tolist()):
            if n == 0:
                p.grad = None


def launched():
    """Whether torchrun (or a launcher like it) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_process():
    """Whether this process writes: rank 0 of a torchrun job, or a process started alone."""
    return int(os.environ.get("RANK", "0")) == 0


def process_group(device="cpu"):
    """The :class:`Ranks` of this process: of a process group while there are several.

    A group made already (by the caller, or by an earlier run in this process) is used as it is; under torchrun
    the first run makes one (gloo for ``device`` "cpu", NCCL for CUDA, this process's GPU chosen by
    ``LOCAL_RANK``), which lasts as long as the process (torchrun's rendezvous is made once); a process started
    alone is rank 0 of 1, with no group.
    """
    torch = _torch()
    dist = torch.distributed
    where = torch_device(device)
    if not (dist.is_available() and dist.is_initialized()):
        if not launched():
            return Ranks()
        if where.type == "cuda" and where.index is None:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return Ranks(dist.get_rank(), dist.get_world_size(), _sum_device(where))


def _sum_device(where):
    """The device the sums over processes are taken on: this process's GPU for NCCL, else the CPU."""
    torch = _torch()
    if where.type != "cuda":
        return None
    return torch.device("cuda", torch.cuda.current_device() if where.index is None else where.index)
