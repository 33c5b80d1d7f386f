"""Sharding a machine job over the ranks of ``torchrun`` / ``accelerate launch``.

Both launchers start one process per GPU and tell each its place through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). Every rank
runs the same command; :class:`Ranks` decides which part of the work is its own.

Why whole batches are dealt, not images: a job first lists its pending work and cuts
it into batches exactly as a single process would, then batch k goes to rank
k mod N. Each batch is therefore the very batch a single-process run computes (the
same images in the same order), so on the same hardware the stored numbers are the
single-process numbers bit for bit (on CUDA a kernel's result can depend on the batch
it sees), and the shares differ by at most one batch.

Why barriers: every rank must cut the same batches, so all ranks read what is already
stored (the resume) before any of them writes. A killed rank's batches are simply
missing; the next run lists them as pending again. Without a launcher ``Ranks()`` is
one rank, every batch is its own and nothing waits.

The barriers and the final summaries go through a ``gloo`` process group (CPU and
TCP, also on GPU machines; no tensors are exchanged).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

# A barrier waits for the slowest rank: at most about one batch behind (shares differ by
# at most one batch), but a rank that must first load a large model can be minutes late.
BARRIER_TIMEOUT = timedelta(hours=2)

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class ShardingError(ValueError):
    """A launch that cannot shard correctly; the message names the fix."""


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ShardingError(
            f"environment variable {key}={raw!r}: expected a whole number (it is set by "
            "torchrun / accelerate launch; unset it to run as one process)."
        ) from None


@dataclass(frozen=True)
class Ranks:
    """This process's place among the launched ranks (one rank without a launcher)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    grouped: bool = False  # a process group was started (barriers and gathers are real)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ranks:
        env = os.environ if env is None else env
        world = _env_int(env, "WORLD_SIZE", 1)
        rank = _env_int(env, "RANK", 0)
        local_rank = _env_int(env, "LOCAL_RANK", rank)
        local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
        if world < 1 or not 0 <= rank < world:
            raise ShardingError(
                f"RANK={rank}, WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE; these are "
                "set by torchrun / accelerate launch."
            )
        if not 1 <= local_world <= world or not 0 <= local_rank < local_world:
            raise ShardingError(
                f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world} (WORLD_SIZE={world}): "
                "expected 0 <= LOCAL_RANK < LOCAL_WORLD_SIZE <= WORLD_SIZE."
            )
        return cls(rank, world, local_rank, local_world)

    # -- who does what -------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def several_machines(self) -> bool:
        return self.world > self.local_world

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.world}" if self.world > 1 else ""

    def deal(self, batches: Sequence[T], start: int = 0) -> list[T]:
        """This rank's batches: batch k goes to rank (start + k) mod N.

        ``start`` carries the deal on across calls (one call per model), so that the
        ranks' shares stay within one batch of each other over the whole job.
        """
        return [b for k, b in enumerate(batches) if (start + k) % self.world == self.rank]

    def device(self, requested: str) -> str:
        """One GPU per rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher."""
        if self.world == 1 or not str(requested).startswith("cuda"):
            return requested
        if requested != "cuda":
            raise ShardingError(
                f"--device {requested} with {self.world} ranks: every rank would use the same "
                "GPU. Pass --device cuda and each rank takes GPU LOCAL_RANK (limit the GPUs "
                "with CUDA_VISIBLE_DEVICES)."
            )
        return f"cuda:{self.local_rank}"

    def check_database(self, dialect: str) -> None:
        if self.several_machines and dialect == "sqlite":
            raise ShardingError(
                f"{self.world} ranks on {self.world // self.local_world} or more machines share "
                "one database, but the workspace database is a SQLite file that only one "
                "machine can write safely. Use PostgreSQL (--db-url postgresql://... or "
                "$ARENA_DB_URL) and a workspace folder every machine mounts; SQLite is fine "
                "for several ranks on one machine."
            )

    # -- waiting and collecting -----------------------------------------------------------
    def barrier(self) -> None:
        if self.grouped:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (in rank order); None on the other ranks."""
        if not self.grouped:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the answer): decisions that
        end a loop of barriers must be taken by all ranks together."""
        if not self.grouped:
            return bool(flag)
        import torch.distributed as dist

        flags: list[Any] = [None] * self.world
        dist.all_gather_object(flags, bool(flag))
        return any(flags)

    def close(self) -> None:
        """The end of a job: wait for every rank. The process group stays up (a gloo
        group cannot be started again in the same process) and ends at exit."""
        self.barrier()


def start(dialect: str, env: Mapping[str, str] | None = None) -> Ranks:
    """The ranks of this launch, checked against the database, with their process group."""
    ranks = Ranks.from_env(env)
    if ranks.world == 1:
        return ranks
    ranks.check_database(dialect)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        atexit.register(_end_group)
    return Ranks(ranks.rank, ranks.world, ranks.local_rank, ranks.local_world, grouped=True)


def _end_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class TotalBar:
    """Rank 0's bar over the whole job (all ranks), read from what is stored.

    Each rank shows its own bar; rank 0 also shows this one, refreshed after each of its
    batches by ``count()`` (the rows stored so far), since ranks do not message each
    other while they work.
    """

    def __init__(
        self,
        ranks: Ranks,
        total: int,
        count: Callable[[], int],
        desc: str,
        enabled: bool = True,
    ):
        self.count = count
        self.bar = None
        if enabled and ranks.world > 1 and ranks.is_main and total:
            from tqdm import tqdm

            self.base = count()
            self.bar = tqdm(
                total=total,
                desc=f"{desc} (all ranks)",
                file=sys.stderr,
                position=ranks.local_world,
            )

    def refresh(self) -> None:
        if self.bar is not None:
            self.bar.n = min(self.bar.total, self.count() - self.base)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.close()


def bar_label(ranks: Ranks, desc: str) -> str:
    return f"{desc} [{ranks.label}]" if ranks.world > 1 else desc
