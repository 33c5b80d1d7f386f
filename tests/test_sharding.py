"""Sharding over launcher ranks (scoring/sharding.py): who takes which batch, and the checks.

The jobs under a real ``torchrun`` are in ``test_sharded_jobs.py``.
"""

from __future__ import annotations

import pytest

from scoring.sharding import Ranks, ShardingError, start


def launch(rank, world, local_rank=None, local_world=None) -> dict[str, str]:
    env = {"RANK": str(rank), "WORLD_SIZE": str(world)}
    if local_rank is not None:
        env["LOCAL_RANK"] = str(local_rank)
    if local_world is not None:
        env["LOCAL_WORLD_SIZE"] = str(local_world)
    return env


def test_without_a_launcher_one_rank_takes_everything():
    ranks = Ranks.from_env({})
    assert (ranks.rank, ranks.world, ranks.is_main, ranks.grouped) == (0, 1, True, False)
    assert ranks.deal(list("abcde")) == list("abcde")
    assert ranks.device("cuda:3") == "cuda:3"  # an explicit GPU is kept as it is
    assert ranks.gather("x") == ["x"]
    ranks.barrier()  # nothing to wait for


@pytest.mark.parametrize("world", [2, 3, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 24, 25])
def test_the_deal_covers_every_batch_once_and_shares_differ_by_at_most_one(world, n):
    batches = list(range(n))
    shares = [Ranks(r, world).deal(batches) for r in range(world)]
    assert sorted(b for share in shares for b in share) == batches  # each batch once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    for share in shares:  # each rank keeps the single-process order
        assert share == sorted(share)


def test_the_deal_carries_on_across_models_so_the_job_stays_balanced():
    # Three models of 3 batches each on 2 ranks: restarting at rank 0 for every model
    # would give rank 0 six batches and rank 1 three.
    counts = [0, 0]
    start_at = 0
    for _model in range(3):
        batches = list(range(3))
        for r in range(2):
            counts[r] += len(Ranks(r, 2).deal(batches, start=start_at))
        start_at += len(batches)
    assert sorted(counts) == [4, 5]


def test_each_rank_takes_its_local_gpu_and_an_explicit_one_is_refused():
    assert Ranks(3, 4, local_rank=1, local_world=2).device("cuda") == "cuda:1"
    assert Ranks(1, 2, 1, 2).device("cpu") == "cpu"
    with pytest.raises(ShardingError, match="every rank would use the same GPU"):
        Ranks(1, 2, 1, 2).device("cuda:0")


def test_launcher_variables_are_read_and_checked():
    ranks = Ranks.from_env(launch(5, 8, local_rank=1, local_world=4))
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.local_world) == (5, 8, 1, 4)
    assert ranks.several_machines and ranks.label == "rank 5/8"
    assert not Ranks.from_env(launch(1, 2)).several_machines  # one machine by default
    with pytest.raises(ShardingError, match="0 <= RANK < WORLD_SIZE"):
        Ranks.from_env(launch(2, 2))
    with pytest.raises(ShardingError, match="WORLD_SIZE='two'"):
        Ranks.from_env({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ShardingError, match="LOCAL_RANK"):
        Ranks.from_env(launch(0, 2, local_rank=3, local_world=2))


def test_several_machines_on_sqlite_are_refused_before_any_work():
    env = launch(0, 4, local_rank=0, local_world=2)
    with pytest.raises(ShardingError, match="Use PostgreSQL"):
        start("sqlite", env)
    Ranks.from_env(env).check_database("postgresql")  # a shared server is fine
    Ranks.from_env(launch(0, 2, 0, 2)).check_database("sqlite")  # one machine, WAL: fine
