"""Data-parallel training over MPI (``mpiexec -n N pygan train --distributed ...``), deterministic.

Every rank holds a replica of both players and trains on its share of each global batch: rank r
of N takes rows ``r * B/N .. (r + 1) * B/N`` of the batch a single process would take (the same
shuffled order), and of the noise and labels the single process would draw for it (every rank
draws the global batch's and keeps its rows, so the trainer's random stream stays the same on all
ranks and in the checkpoint). After each backward pass, each player's flat gradient buffer is
averaged across the ranks before its optimizer steps, so every rank steps identically.

The average is deterministic: the buffer is cut into N chunks, chunk c is sent by every rank to
rank c (``Alltoallv``), which adds the N copies in rank order and divides by N, and the averaged
chunks are gathered back (``Allgatherv``). A run on N ranks is therefore bit-identical to itself
at every repeat, and equal to a single-process run of the same global batch within float32
rounding (the sums are taken in another order; Adam's first steps, lr * sign(g), magnify the
rounding of gradient entries that are zero but for it). Each rank sends and receives
``2 (N - 1) / N`` times the buffer per player update.

What stays local: batch-norm statistics are each rank's own batch's (as in most data-parallel
GAN code; a run with batch norm therefore matches the single process in distribution, not
within rounding), and dropout masks come from one stream per rank derived from the layer's seed
and the rank. Rank 0 writes the checkpoints, logs and pictures; every rank reads the checkpoint on
``--resume``, which continues bit for bit on the same N.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from .backend import get_backend, to_numpy

#: How to get the MPI layer.
EXTRA = "pip install 'pygan[mpi]'"
#: Environment variables by which MPI launchers (MPICH's Hydra and PMI, Open MPI) give a process its
#: world size, read to detect an ``mpiexec`` launch without starting MPI.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_size() -> int:
    """The number of processes ``mpiexec`` started with this one (1 when not under MPI), from the
    launcher's environment; MPI itself is not started."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(f"distributed training needs mpi4py and an MPI library: {EXTRA}") from None
    return MPI


class Group:
    """The ranks of one data-parallel run (``MPI.COMM_WORLD`` unless ``comm`` is given), with the
    deterministic collectives the trainer uses. ``bytes_sent`` counts what this rank has sent in
    averages since it was made."""

    def __init__(self, comm: Any = None) -> None:
        mpi = _mpi()
        self._mpi = mpi
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.bytes_sent = 0

    def _chunks(self, n: int) -> tuple[list[int], list[int]]:
        counts = [n // self.size + (1 if r < n % self.size else 0) for r in range(self.size)]
        return counts, [int(v) for v in np.cumsum([0] + counts[:-1])]

    def average(self, buf: Any) -> None:
        """Replace the 1-D array ``buf`` (the same length on every rank) by its mean over the ranks,
        summed in rank order, in place; the result is bit-identical on every rank and at every
        repeat. A device (CuPy) buffer goes through the host."""
        if self.size == 1:
            return
        host = np.ascontiguousarray(to_numpy(buf))
        if host.ndim != 1:
            raise ValueError(f"buf: expected a 1-D buffer, got shape {host.shape}")
        dtype = self._mpi.Datatype.fromcode(host.dtype.char)
        counts, displs = self._chunks(host.size)
        mine = counts[self.rank]
        parts = np.empty((self.size, mine), dtype=host.dtype)
        self.comm.Alltoallv([host, (counts, displs), dtype],
                            [parts, ([mine] * self.size, [mine * r for r in range(self.size)]), dtype])
        acc = parts[0].copy()
        for r in range(1, self.size):  # rank order, whatever order the messages arrived in
            acc += parts[r]
        acc /= host.dtype.type(self.size)
        self.comm.Allgatherv(acc, [host, (counts, displs), dtype])
        self.bytes_sent += (host.size - mine + mine * (self.size - 1)) * host.itemsize
        if host is not buf:
            buf[...] = get_backend().xp.asarray(host)

    def sync(self, stats: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
        """A step's statistics averaged over the ranks (each rank's are its share's means), and
        whether any rank was asked to stop (Ctrl-C, SIGTERM), so that all stop at one step."""
        values = np.array([float(stop), *stats.values()], dtype=np.float64)
        if self.size > 1:  # a few numbers: one allgather, then the same rank-order sum on every rank
            every = np.empty((self.size, values.size), dtype=np.float64)
            self.comm.Allgather(values, every)
            values = every[0].copy()
            for r in range(1, self.size):
                values += every[r]
            values /= self.size
        return dict(zip(stats, (float(v) for v in values[1:]))), bool(values[0] > 0)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (a collective: every rank must call it)."""
        return bool(self.comm.allreduce(int(bool(flag)), op=self._mpi.MAX)) if self.size > 1 else bool(flag)

    def barrier(self) -> None:
        """Wait for every rank."""
        self.comm.Barrier()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (in rank order), None on the others."""
        return self.comm.gather(value, root=0)

    def check_replicas(self, flat: Any, what: str) -> None:
        """Raise on every rank if the ranks' copies of ``flat`` differ (a replica built from
        another seed or configuration would otherwise train silently apart)."""
        digest = np.frombuffer(np.ascontiguousarray(to_numpy(flat)).tobytes(), dtype=np.uint8)
        mine = int(np.bitwise_xor.reduce(digest)) if digest.size else 0
        mine = (mine, int(digest.size), float(np.sum(to_numpy(flat), dtype=np.float64)))
        every = self.comm.allgather(mine)
        if any(v != every[0] for v in every):
            raise RuntimeError(f"{what}: the ranks' replicas differ (rank 0 {every[0]}, others {every[1:]}); "
                               "every rank must build the same model from the same seed")

    def attach(self, gan: Any) -> None:
        """Make ``gan`` train as this rank's replica: each optimizer averages its gradient over
        the ranks before it steps, the trainer takes its share of each batch and of each batch's
        random draws, dropout layers draw this rank's masks, and the ranks are checked to start
        from identical weights."""
        gan.group = self
        if gan.reference_z is not None:  # virtual batch norm's reference batch, drawn from the seed
            self.check_replicas(gan.reference_z, "the virtual-batch-norm reference batch")
        for name, player in gan.players.items():
            self.check_replicas(player.optimizer.flat, f"the {name}'s parameters")
            player.optimizer.reduce = self.average
            for module in player.module.modules():
                if hasattr(module, "stream"):
                    module.stream = self.rank

    def local_size(self) -> int:
        """How many of the ranks share this rank's machine (its cores)."""
        shared = self.comm.Split_type(self._mpi.COMM_TYPE_SHARED)
        try:
            return int(shared.Get_size())
        finally:
            shared.Free()

    def abort(self, status: int) -> None:
        """End every rank of the job now, with exit status ``status`` (after a failure that the
        other ranks, waiting in a collective, would otherwise wait for for ever)."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)


def library() -> str:
    """The MPI library in use, in a few words (``MPICH Version: 5.0.2``)."""
    return " ".join(_mpi().Get_library_version().splitlines()[0].split())
