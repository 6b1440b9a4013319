"""The benchmarks measure what they say: the batched contenders count N env steps a call,
and ``bench train`` runs one real training per vectorization path."""

from __future__ import annotations

import pytest

from experiments import bench_env, bench_train


def test_the_batched_contender_counts_every_env_of_a_call() -> None:
    result = bench_env.run_worker("himari_vec_index", n_bars=3_000, steps=512, repeats=1, seed=0, vec=8)
    assert result["envs"] == 8 and result["steps_per_second"] > 0
    single = bench_env.run_worker("himari_stack_training", n_bars=3_000, steps=256, repeats=1, seed=0)
    assert single["envs"] == 1 and single["steps_per_second"] > 0


def test_a_batched_contender_without_n_is_refused() -> None:
    with pytest.raises(ValueError, match="--vec N"):
        bench_env.run_benchmark(contenders=("himari_vec",), n_bars=3_000, steps=64, repeats=1, vec=0)


@pytest.mark.slow
def test_bench_train_trains_once_per_path_and_reports_the_ratio(tmp_path) -> None:
    config = tmp_path / "tiny.yaml"
    text = open("experiments/configs/cpu-small.yaml").read()
    config.write_text(text.replace("n_steps: 512", "n_steps: 64").replace("batch_size: 256", "batch_size: 64")
                      .replace("n_epochs: 10", "n_epochs: 1"))
    report = bench_train.run_benchmark(config_path=str(config), timesteps=256, paths=("subproc", "batched"))
    for path in ("subproc", "batched"):
        assert "error" not in report["results"][path], report["results"][path]
        assert report["results"][path]["steps"] == 256
    assert report["ratios"]["batched/subproc"] > 0
