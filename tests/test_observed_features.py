"""``observed_features``: the agent sees the named observation features only, in that order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents.config import ConfigError, EnvConfig, load_config
from experiments.ledger import config_hash
from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from tests.conftest import REPO_ROOT, assert_the_default_hashes_as_absent
from wrappers.observations import select_observed_features
from wrappers.stack import make_himari_env

OBSERVED = ("ekf_logret_168", "trend_pct", "ekf_rv_24")


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=3000, seed=9).frame, cache=False)


def test_the_named_columns_are_kept_in_the_given_order():
    features = np.arange(12, dtype=np.float32).reshape(3, 4)
    kept, names = select_observed_features(features, ("a", "b", "c", "d"), ["c", "a"])
    np.testing.assert_array_equal(kept, [[2, 0], [6, 4], [10, 8]])
    assert names == ("c", "a")
    whole, all_names = select_observed_features(features, ("a", "b", "c", "d"), None)
    assert whole is features and all_names == ("a", "b", "c", "d")


@pytest.mark.parametrize(("observed", "message"), [
    (["a", "zz"], r"\['zz'\] are not features of this market; it has \['a', 'b'\]"),
    (["a", "a"], r"names \['a'\] more than once"),
    ([], "is empty"),
])
def test_an_unknown_repeated_or_empty_selection_is_refused_by_name(observed, message):
    with pytest.raises(ValueError, match=message):
        select_observed_features(np.zeros((2, 2), dtype=np.float32), ("a", "b"), observed)


def test_the_env_observes_the_full_stacks_columns_at_every_step(prepared):
    full = make_himari_env(prepared, split="val", context=16, episode_length=None, decision_interval=4)
    narrow = make_himari_env(prepared, split="val", context=16, episode_length=None, decision_interval=4,
                             observed_features=OBSERVED)
    assert narrow.observation_space["features"].shape == (16, 3)
    check_env(narrow, skip_render_check=True)
    columns = [prepared.observation_feature_names.index(name) for name in OBSERVED]
    full_obs, _ = full.reset(seed=1)
    narrow_obs, _ = narrow.reset(seed=1)
    for action in [1, 1, 0, 2, 2, 1, 0, 0]:
        np.testing.assert_array_equal(narrow_obs["features"], full_obs["features"][:, columns])
        assert narrow_obs["regime"] == full_obs["regime"] and narrow_obs["position"] == full_obs["position"]
        full_obs, full_reward, *_ = full.step(action)
        narrow_obs, narrow_reward, *_ = narrow.step(action)
        assert narrow_reward == full_reward  # the reward and the risk layer do not read the observation


def test_the_config_refuses_repeated_names_and_all_features_keep_the_hash():
    with pytest.raises(ConfigError, match=r"env\.observed_features"):
        EnvConfig(observed_features=("trend_pct", "trend_pct"))
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    assert_the_default_hashes_as_absent(config, "env", "observed_features", None)  # runs recorded before the key existed
    document = config.to_dict()
    narrow = dataclasses.replace(config, env=dataclasses.replace(config.env, observed_features=OBSERVED))
    assert config_hash(narrow.to_dict()) != config_hash(document)
    assert narrow.env.env_kwargs()["observed_features"] == list(OBSERVED)
