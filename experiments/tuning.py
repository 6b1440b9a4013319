"""Hyperparameter search with Optuna: ``himari tune``.

A *study* is a set of training runs (trials) whose configurations Optuna samples from a
search space; each trial trains through :func:`experiments.train.train`, so it is an
ordinary run folder (``config.json``, pipeline, TensorBoard, best model) plus one line in the
trials ledger tagged ``tune:<study>`` (the scoreboard's deflated Sharpe counts it).

Objective
    The best *eligible* validation Sharpe of the trial (the value of the model that
    best-model selection keeps, ``training_summary.json["best_validation"]["value"]``),
    maximized. Trials whose every validation pass was collapsed (HOLD share outside the
    collapse range) score ``-inf``. The test split is never evaluated: the base config must
    have ``train.eval_split: val`` and ``train.validation_metric: sharpe``, and a space may
    not change either.

Pruning
    :class:`OptunaPruningCallback` reports every validation pass (``value`` at
    ``num_timesteps``) with ``trial.report`` and stops training when ``trial.should_prune()``
    (``MedianPruner`` by default); the trial is then recorded as PRUNED (its run folder and
    ledger line are still written: it was tried).

Search space (YAML)
    ::

        fixed:                      # dotted config keys set for every trial (optional)
          train.total_timesteps: 16384
        params:                     # dotted config keys sampled per trial
          ppo.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
          ppo.ent_coef:      {type: float, low: 0.05, high: 0.15}
          env.context:       {type: int, low: 16, high: 64, step: 16}
          env.reward:        {type: categorical, choices: [adaptive, sortino]}

    A key must name a field of :class:`agents.config.ExperimentConfig` (``env.*``,
    ``extractor.*``, ``ppo.*``, ``train.*``); an unknown key is an error naming it and the
    space file. Knobs become tunable as they are added to the config classes (reward
    fractions and risk-layer knobs, once ``EnvConfig`` exposes them).

Seeds
    Trial ``k`` of study ``S`` trains with ``train.seed = trial_seed(S, k)`` (SHA-256 of
    ``"S:k"``); its resolved configuration is also written as ``trial.yaml`` in the trial's
    run folder, so ``himari train --config <trial>/trial.yaml`` re-runs it exactly.

Storage and workers
    Default: an SQLite file ``<run-dir>/optuna.db`` (no server). ``--storage
    postgresql://user@host:port/db`` lets several machines share one study: each runs the
    same command. ``--n-jobs K`` starts K worker *processes* on this machine. Trials send a
    heartbeat; a worker killed mid-trial leaves its trial RUNNING only until the heartbeat
    is ``2 * heartbeat`` seconds stale, then another worker marks it FAIL and runs a
    replacement. ``--trials N`` is the study's total of COMPLETE + PRUNED trials over all
    workers and machines (failed trials are replaced; a race between workers may add at
    most one extra trial per worker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import multiprocessing
import os
import re
import socket
import time
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from agents.config import ConfigError, ExperimentConfig, load_config

if typing.TYPE_CHECKING:
    import optuna

__all__ = [
    "FORBIDDEN_KEYS",
    "OptunaPruningCallback",
    "ParamSpec",
    "SearchSpace",
    "TuneSettings",
    "apply_overrides",
    "default_storage",
    "load_space",
    "open_storage",
    "study_report",
    "trial_config",
    "trial_seed",
    "tune",
]

PARAM_TYPES: tuple[str, ...] = ("float", "int", "categorical")
#: Keys a space may not set: the seed is derived per trial, naming is per trial, and the
#: objective must stay the validation Sharpe (never the test split).
FORBIDDEN_KEYS: tuple[str, ...] = (
    "name",
    "train.seed",
    "train.run_name",
    "train.runs_dir",
    "train.eval_split",
    "train.validation_metric",
)
DEFAULT_HEARTBEAT_S = 30
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------------------------
# Search space and config overrides
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One sampled parameter: a dotted config key and its Optuna distribution.

    ``kind`` is ``float`` (``low``, ``high``, optional ``log`` or ``step``), ``int``
    (``low``, ``high``, optional ``step`` or ``log``) or ``categorical`` (``choices``: a list
    of strings, numbers, booleans or null).
    """

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Sample this parameter in ``trial`` (the Optuna parameter name is the dotted key)."""
        if self.kind == "float":
            assert self.low is not None and self.high is not None
            return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log,
                                       step=None if self.step is None else float(self.step))
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=1 if self.step is None else int(self.step))
        assert self.choices is not None
        return trial.suggest_categorical(self.key, list(self.choices))

    def candidates(self) -> list[Any]:
        """Values checked against the config when the space is loaded (bounds, choices)."""
        if self.kind == "categorical":
            assert self.choices is not None
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated search space: ``fixed`` overrides plus sampled ``params``."""

    source: str
    fixed: dict[str, Any]
    params: tuple[ParamSpec, ...]


def _config_field_types() -> dict[str, Any]:
    """Dotted key -> annotation for every leaf field of :class:`ExperimentConfig`."""
    fields: dict[str, Any] = {}
    for section in dataclasses.fields(ExperimentConfig):
        annotation = typing.get_type_hints(ExperimentConfig)[section.name]
        if dataclasses.is_dataclass(annotation):
            hints = typing.get_type_hints(annotation)
            for leaf in dataclasses.fields(annotation):
                fields[f"{section.name}.{leaf.name}"] = hints[leaf.name]
        else:
            fields[section.name] = annotation
    return fields


def _check_key(key: str, source: str) -> None:
    known = _config_field_types()
    if key not in known:
        sections = sorted({name.split(".")[0] for name in known if "." in name})
        section = key.split(".")[0]
        hint = (f"known {section}.* keys: {sorted(k.split('.', 1)[1] for k in known if k.startswith(section + '.'))}"
                if section in sections else f"keys are <section>.<field> with section in {sections}")
        raise ConfigError(f"{source}: unknown key {key!r} ({hint})")
    if key in FORBIDDEN_KEYS:
        raise ConfigError(f"{source}: {key!r} cannot be tuned (seeds are derived per trial and the "
                          "objective is always the validation Sharpe)")


def apply_overrides(config: ExperimentConfig, overrides: Mapping[str, Any], *,
                    source: str = "<overrides>") -> ExperimentConfig:
    """``config`` with dotted keys replaced (``{"ppo.ent_coef": 0.08, "env.context": 48}``).

    Values are type-checked and range-checked by :class:`ExperimentConfig` itself.

    Raises
    ------
    ConfigError
        Naming ``source`` and the key: unknown key, wrong type or out-of-range value.
    """
    document = config.to_dict()
    for key, value in overrides.items():
        if key not in _config_field_types():
            _check_key(key, source)
        section, _, leaf = key.partition(".")
        if leaf:
            document[section][leaf] = value
        else:
            document[section] = value
    return ExperimentConfig.from_dict(document, source=source)


def _parse_param(key: str, spec: Any, source: str) -> ParamSpec:
    where = f"{source}: params.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping with 'type', got {spec!r}")
    allowed = {"type", "low", "high", "log", "step", "choices"}
    unknown = sorted(str(name) for name in spec if name not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}.type must be one of {list(PARAM_TYPES)}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices must be a non-empty list, got {choices!r}")
        for choice in choices:
            if not (choice is None or isinstance(choice, bool | int | float | str)):
                raise ConfigError(f"{where}.choices: {choice!r} is not a string, number, boolean or null")
        if any(name in spec for name in ("low", "high", "log", "step")):
            raise ConfigError(f"{where}: categorical takes only 'choices'")
        return ParamSpec(key=key, kind=kind, choices=tuple(choices))
    low: Any = spec.get("low")
    high: Any = spec.get("high")
    number: tuple[type[int] | type[float], ...] = (int,) if kind == "int" else (int, float)
    bounds: dict[str, Any] = {"low": low, "high": high}
    for name, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(float(value)):
            hint = " (YAML reads 3e-4 as text: write 3.0e-4)" if isinstance(value, str) else ""
            raise ConfigError(f"{where}.{name} must be a finite {'integer' if kind == 'int' else 'number'}, "
                              f"got {value!r}{hint}")
    assert low is not None and high is not None
    if not low < high:
        raise ConfigError(f"{where}: need low < high, got {low} and {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    step: Any = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or not float(step) > 0:
            raise ConfigError(f"{where}.step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
        if log:
            raise ConfigError(f"{where}: 'step' and 'log' cannot be combined")
    if "choices" in spec:
        raise ConfigError(f"{where}: 'choices' is for type categorical")
    return ParamSpec(key=key, kind=kind, low=low, high=high, log=log, step=step)


def load_space(path: str | Path, base: ExperimentConfig) -> SearchSpace:
    """Read and validate a search-space YAML against the base config.

    Every key (in ``fixed`` and ``params``) must name a config field; ``fixed`` values and
    each parameter's bounds/choices must be accepted by the config on their own.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ConfigError
        Naming the space file and the key.
    """
    path = Path(path)
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML: {error}") from None
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping with 'params' (and optional 'fixed')")
    unknown = sorted(str(key) for key in document if key not in ("fixed", "params"))
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; allowed: ['fixed', 'params']")
    fixed = document.get("fixed") or {}
    params = document.get("params") or {}
    if not isinstance(fixed, Mapping) or not isinstance(params, Mapping):
        raise ConfigError(f"{source}: 'fixed' and 'params' must be mappings of dotted config keys")
    if not params:
        raise ConfigError(f"{source}: 'params' is empty: nothing to tune")
    for key in [*fixed, *params]:
        _check_key(str(key), source)
    both = sorted(set(fixed) & set(params))
    if both:
        raise ConfigError(f"{source}: key(s) {both} are both fixed and tuned")
    with_fixed = apply_overrides(base, dict(fixed), source=f"{source} (fixed)")
    specs = tuple(_parse_param(str(key), spec, source) for key, spec in params.items())
    for spec in specs:
        for value in spec.candidates():
            try:
                apply_overrides(with_fixed, {spec.key: value}, source=source)
            except ConfigError as error:
                # Only errors about this key: a cross-field rule (d_model vs n_heads) may be
                # satisfied once the other key is sampled too.
                if f"{spec.key}:" in str(error) or f"{spec.key} must" in str(error) or f"['{spec.key}']" in str(error):
                    raise ConfigError(f"{source}: params.{spec.key} value {value!r} is invalid: "
                                      f"{str(error).removeprefix(source + ': ')}") from None
    return SearchSpace(source=source, fixed=dict(fixed), params=specs)


def trial_seed(study_name: str, number: int) -> int:
    """The training seed of trial ``number`` of ``study_name``: 31 bits of SHA-256("name:number")."""
    digest = hashlib.sha256(f"{study_name}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def trial_config(base: ExperimentConfig, space: SearchSpace, params: Mapping[str, Any], *, study_name: str,
                 number: int) -> ExperimentConfig:
    """The resolved config of one trial: base, then ``space.fixed``, then ``params``, with the
    derived seed and the run name ``trial-<number>``."""
    overrides = {**space.fixed, **params, "train.seed": trial_seed(study_name, number),
                 "train.run_name": f"trial-{number:04d}"}
    return apply_overrides(base, overrides, source=f"{space.source} (trial {number})")


def check_objective_config(config: ExperimentConfig, source: str) -> None:
    """The objective is the validation Sharpe: validation passes on ``val``, metric ``sharpe``."""
    train = config.train
    if train.eval_split != "val":
        raise ConfigError(f"{source}: train.eval_split is {train.eval_split!r}; tuning evaluates on 'val' only")
    if train.validation_metric != "sharpe":
        raise ConfigError(f"{source}: train.validation_metric is {train.validation_metric!r}; the tuning "
                          "objective is the validation Sharpe ('sharpe')")
    if train.eval_freq <= 0:
        raise ConfigError(f"{source}: train.eval_freq is 0; tuning needs validation passes (set it > 0)")


# --------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------


class OptunaPruningCallback(BaseCallback):
    """Reports each validation pass to an Optuna trial and stops training when pruned.

    It reads the ``history`` of the run's :class:`agents.callbacks.ValidationCallback`
    (found in the callback list that ``model.learn`` runs; append this callback after it).
    Each new record gives ``trial.report(record["value"], record["num_timesteps"])``
    (non-finite values are not reported); when ``trial.should_prune()`` is true, ``on_step``
    returns False (SB3 then ends ``learn``) and :attr:`pruned_at` holds the timestep.

    ``total_timesteps`` and ``eval_freq`` (the run's), when given, exempt the last pass
    (no further pass would come before the end): stopping then saves nothing, and the trial
    keeps its objective value as COMPLETE.
    """

    def __init__(self, trial: optuna.trial.BaseTrial, *, total_timesteps: int | None = None,
                 eval_freq: int | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.trial = trial
        self.last_prunable_step = (None if total_timesteps is None or eval_freq is None
                                   else total_timesteps - eval_freq)
        self.pruned_at: int | None = None
        self.reports: list[tuple[int, float]] = []
        self._history: list[dict[str, Any]] | None = None
        self._seen = 0

    def _find_history(self) -> list[dict[str, Any]] | None:
        from agents.callbacks import ValidationCallback

        pending: list[Any] = [self.locals.get("callback")]
        while pending:
            callback = pending.pop()
            if isinstance(callback, ValidationCallback):
                return callback.history
            if isinstance(callback, CallbackList):
                pending.extend(callback.callbacks)
        return None

    def _on_step(self) -> bool:
        if self._history is None:
            self._history = self._find_history()
            if self._history is None:
                return True
        while self._seen < len(self._history):
            record = self._history[self._seen]
            self._seen += 1
            value, step = float(record["value"]), int(record["num_timesteps"])
            if not math.isfinite(value):
                continue
            self.trial.report(value, step)
            self.reports.append((step, value))
            final = self.last_prunable_step is not None and step > self.last_prunable_step
            if not final and self.trial.should_prune():
                self.pruned_at = step
                if self.verbose > 0:
                    print(f"trial {self.trial.number}: pruned at {step:,} timesteps (validation sharpe {value:.4f})")
                return False
        return True


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


def default_storage(run_dir: str | Path) -> str:
    """The embedded storage: an SQLite file ``<run_dir>/optuna.db`` (absolute URL)."""
    return f"sqlite:///{(Path(run_dir) / 'optuna.db').resolve()}"


def _masked(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str, *, heartbeat_interval: int | None = DEFAULT_HEARTBEAT_S) -> optuna.storages.RDBStorage:
    """An Optuna relational storage for ``url`` (``sqlite:///...``, ``postgresql://...``) with
    trial heartbeats every ``heartbeat_interval`` seconds (grace: twice that).

    Raises
    ------
    RuntimeError
        One line naming the URL (password masked) when the storage cannot be reached.
    """
    import optuna

    given = url
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # The driver the package installs (psycopg 3), whatever SQLAlchemy's default is.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        # Several worker processes write the same file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 120}
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
        engine_kwargs["pool_pre_ping"] = True
    try:
        with warnings.catch_warnings():
            # Heartbeats are marked experimental in Optuna; they are what fails a killed trial.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                grace_period=None if heartbeat_interval is None else 2 * heartbeat_interval,
            )
    except Exception as error:  # sqlalchemy/driver errors: the message names the cause
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"cannot open the study storage {_masked(given)}: {reason}") from None


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker process needs (picklable: paths and numbers, no live objects).

    ``trials`` is the study's target number of COMPLETE + PRUNED trials; ``timeout`` (s) stops
    a worker from starting new trials after that long; ``heartbeat`` (s) is the trial
    heartbeat interval; ``pruner`` is ``median`` or ``none``; ``ledger`` None means the
    default ledger of :func:`experiments.ledger.ledger_path`.
    """

    config: str
    space: str
    study: str
    storage: str
    run_dir: str
    trials: int
    data: str | None = None
    timeout: float | None = None
    heartbeat: int = DEFAULT_HEARTBEAT_S
    pruner: str = "median"
    ledger: str | None = None
    folds: int | None = None

    def __post_init__(self) -> None:
        if self.folds is not None and self.folds < 1:
            raise ValueError(f"--folds must be >= 1, got {self.folds}")
        if not _STUDY_NAME.match(self.study):
            raise ValueError(f"--study must be letters, digits, '_', '-', '.', got {self.study!r}")
        if self.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {self.trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.heartbeat < 1:
            raise ValueError(f"--heartbeat must be >= 1 second, got {self.heartbeat}")
        if self.pruner not in ("median", "none"):
            raise ValueError(f"--pruner must be 'median' or 'none', got {self.pruner!r}")


def base_config(settings: TuneSettings) -> ExperimentConfig:
    """The config file with ``--data`` applied (an absolute path, as ``himari train`` does)."""
    config = load_config(settings.config)
    if settings.data is not None:
        config = dataclasses.replace(config, env=dataclasses.replace(config.env, data=str(Path(settings.data).resolve())))
    check_objective_config(config, settings.config)
    return config


def _pruner(settings: TuneSettings) -> optuna.pruners.BasePruner:
    import optuna

    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    # Prune against the median of finished trials at the same timestep, once a few finished.
    return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, settings.trials // 4)), n_warmup_steps=0)


def _sampler(settings: TuneSettings) -> optuna.samplers.BaseSampler:
    import optuna

    # Unseeded on purpose: workers seeded alike would sample the same first configurations.
    # What makes a trial reproducible is its recorded parameters and derived training seed.
    return optuna.samplers.TPESampler(n_startup_trials=min(10, max(2, settings.trials // 3)))


def open_study(settings: TuneSettings, *, create: bool) -> optuna.Study:
    """Create (or join) the study in ``settings.storage``; direction: maximize."""
    import optuna

    storage = open_storage(settings.storage, heartbeat_interval=settings.heartbeat)
    kwargs: dict[str, Any] = {"study_name": settings.study, "storage": storage,
                              "sampler": _sampler(settings), "pruner": _pruner(settings)}
    if not create:
        return optuna.load_study(**kwargs)
    try:
        return optuna.create_study(direction="maximize", load_if_exists=True, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:  # another machine created it at the same moment
        return optuna.load_study(**kwargs)


def _objective(settings: TuneSettings, base: ExperimentConfig, space: SearchSpace):
    import optuna

    from experiments.train import train

    def objective(trial: optuna.Trial) -> float:
        params = {spec.key: spec.suggest(trial) for spec in space.params}
        trial_dir = Path(settings.run_dir) / f"trial-{trial.number:04d}"
        seed = trial_seed(settings.study, trial.number)
        attributes: dict[str, Any] = {"seed": seed, "run_dir": str(trial_dir.resolve()),
                                      "host": socket.gethostname(), "pid": os.getpid()}
        for name, attribute in attributes.items():
            trial.set_user_attr(name, attribute)
        try:
            config = trial_config(base, space, params, study_name=settings.study, number=trial.number)
        except ConfigError as error:
            # A combination the config refuses (e.g. d_model not divisible by n_heads): nothing
            # was trained; recorded as pruned so that it neither counts as a result nor repeats.
            trial.set_user_attr("invalid_config", str(error))
            raise optuna.TrialPruned(f"invalid configuration: {error}") from None
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "trial.yaml").write_text(
            f"# study {settings.study}, trial {trial.number}: re-run with\n"
            f"#   himari train --config {trial_dir / 'trial.yaml'} --run-dir <new folder>\n"
            + yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        if settings.folds is not None:
            return _walkforward_objective(trial, settings, config, trial_dir)
        pruning = OptunaPruningCallback(trial, total_timesteps=config.train.total_timesteps,
                                        eval_freq=config.train.eval_freq, verbose=config.train.verbose)
        summary = train(config, run_dir=trial_dir, tag=f"tune:{settings.study}", ledger=settings.ledger,
                        extra_callbacks=[pruning])
        best = summary["best_validation"]
        value = float(best["value"]) if best is not None else -math.inf
        trial.set_user_attr("timesteps", int(summary["timesteps"]))
        trial.set_user_attr("wall_seconds", float(summary["wall_seconds"]))
        trial.set_user_attr("best_validation_timesteps", None if best is None else int(best["num_timesteps"]))
        trial.set_user_attr("validation_sharpe", value if math.isfinite(value) else None)
        if pruning.pruned_at is not None:
            trial.set_user_attr("pruned_at", pruning.pruned_at)
            raise optuna.TrialPruned(f"pruned at {pruning.pruned_at} timesteps")
        return value

    return objective


def _walkforward_objective(trial: Any, settings: TuneSettings, config: ExperimentConfig, trial_dir: Path) -> float:
    """The median over walk-forward folds of each fold's best validation Sharpe.

    Folds as ``himari walkforward`` (:func:`experiments.walkforward.walkforward_folds`, bars
    before 2024 only); each fold trains on its own window, selects on its own validation
    window and is never scored on its test window here. After each fold the running median
    is reported to Optuna (step = fold index), so a trial can be pruned between folds.
    """
    import optuna

    from experiments.train import train
    from experiments.walkforward import DEFAULT_END, _fold_config, walkforward_folds
    from wrappers.stack import load_frame

    frame = load_frame(config.env.data, seed=config.env.market_seed)
    assert settings.folds is not None
    folds = walkforward_folds(frame.index, settings.folds, end=DEFAULT_END)
    values: list[float] = []
    for fold in folds:
        fold_dir = trial_dir / f"fold{fold.index}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        data_path = fold_dir / "data.parquet"
        frame.iloc[:fold.test_end].to_parquet(data_path)
        fold_config = _fold_config(config, data_path, fold, seed=config.train.seed, timesteps=None)
        summary = train(fold_config, run_dir=fold_dir / "run", fold=fold.index, tag=f"tune:{settings.study}",
                        ledger=settings.ledger)
        best = summary["best_validation"]
        values.append(float(best["value"]) if best is not None else -math.inf)
        running = float(np.median(values))
        trial.report(running, fold.index)
        if fold.index < len(folds) - 1 and trial.should_prune():
            trial.set_user_attr("pruned_at_fold", fold.index)
            raise optuna.TrialPruned(f"pruned after fold {fold.index}")
    trial.set_user_attr("fold_validation_sharpes", [v if math.isfinite(v) else None for v in values])
    return float(np.median(values))


def _counts(study: optuna.Study) -> tuple[int, int]:
    """(COMPLETE + PRUNED, RUNNING + WAITING) trials of the study now."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    active = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    return done, active


def run_worker(settings: TuneSettings) -> int:
    """One worker: run trials until the study holds ``settings.trials`` COMPLETE + PRUNED
    trials (or ``timeout`` elapsed); returns the number of trials this worker ran.

    While the remaining trials are all running elsewhere, it waits: if one of those workers
    dies, its trial's heartbeat goes stale, it is marked FAIL here and replaced.
    """
    import optuna

    base = base_config(settings)
    space = load_space(settings.space, base)
    study = open_study(settings, create=True)
    objective = _objective(settings, base, space)
    started = time.monotonic()
    ran = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        done, active = _counts(study)
        if done >= settings.trials:
            break
        if settings.timeout is not None and time.monotonic() - started >= settings.timeout:
            break
        if done + active >= settings.trials:
            time.sleep(min(settings.heartbeat, 5))  # the last trials run elsewhere: watch them
            continue
        study.optimize(objective, n_trials=1, catch=())
        ran += 1
    return ran


def _worker_process(settings: TuneSettings) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_worker(settings)


def tune(settings: TuneSettings, *, n_jobs: int = 1) -> dict[str, Any]:
    """Run the study with ``n_jobs`` worker processes on this machine (1: in this process).

    The study is created first (so workers only join it); returns the study's state counts
    and best trials afterwards (:func:`study_report`, which also writes the history PNG and
    ``<study>_report.json`` into ``settings.run_dir``).
    """
    if n_jobs < 1:
        raise ValueError(f"--n-jobs must be >= 1, got {n_jobs}")
    base = base_config(settings)
    load_space(settings.space, base)  # fail before starting anything
    Path(settings.run_dir).mkdir(parents=True, exist_ok=True)
    open_study(settings, create=True)
    if n_jobs == 1:
        run_worker(settings)
    else:
        # Processes, not threads: torch and SB3 are not thread-friendly.
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_worker_process, args=(settings,), name=f"tune-worker-{i}")
                   for i in range(n_jobs)]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join()
        failed = [f"{w.name} (exit {w.exitcode})" for w in workers if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"tuning worker(s) failed: {', '.join(failed)}; the study in "
                               f"{_masked(settings.storage)} keeps every finished trial")
    return study_report(settings.storage, settings.study, out_dir=settings.run_dir)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "seed": trial.user_attrs.get("seed"),
        "params": dict(trial.params),
        "run_dir": trial.user_attrs.get("run_dir"),
        "timesteps": trial.user_attrs.get("timesteps"),
        "pruned_at": trial.user_attrs.get("pruned_at"),
    }


def study_report(storage: str, study_name: str, *, out_dir: str | Path | None, top: int = 5) -> dict[str, Any]:
    """Summary of a study: trial counts by state, the ``top`` best trials, parameter
    importances (fANOVA over COMPLETE trials with a finite value; empty below 2 such trials)
    and, when ``out_dir`` is given, ``<out_dir>/<study>_history.png`` (optimization history)
    and ``<out_dir>/<study>_report.json``.

    Raises
    ------
    ValueError
        When the storage holds no study of that name (the names it holds are listed).
    """
    import json

    import optuna
    from optuna.trial import TrialState

    storage_object = open_storage(storage, heartbeat_interval=None)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage_object)]
    if study_name not in names:
        raise ValueError(f"no study {study_name!r} in {_masked(storage)} (studies there: {names})")
    study = optuna.load_study(study_name=study_name, storage=storage_object)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    finished = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ranked = sorted(finished, key=lambda t: t.value if t.value is not None else -math.inf, reverse=True)
    finite = [t for t in finished if t.value is not None and math.isfinite(t.value)]
    importances: dict[str, float] = {}
    importance_note = None
    if len(finite) >= 2:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            scratch = optuna.create_study(direction="maximize")  # in memory: finite values only
            scratch.add_trials(finite)
        finally:
            optuna.logging.set_verbosity(verbosity)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = {k: float(v) for k, v in optuna.importance.get_param_importances(scratch).items()}
        except (RuntimeError, ValueError) as error:  # e.g. every parameter constant
            importance_note = str(error)
    else:
        importance_note = f"needs 2 complete trials with a finite value, has {len(finite)}"
    report: dict[str, Any] = {
        "study": study_name,
        "storage": _masked(storage),
        "counts": counts,
        "trials": len(trials),
        "best": [_trial_row(t) for t in ranked[:top]],
        "importances": importances,
        "importance_note": importance_note,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report["history_png"] = str(_plot_history(study, out / f"{study_name}_history.png"))
        (out / f"{study_name}_report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report


def _plot_history(study: optuna.Study, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    best = -math.inf
    xs, best_line = [], []
    for state, marker, colour in ((TrialState.COMPLETE, "o", "tab:blue"), (TrialState.PRUNED, "x", "tab:grey")):
        points = [(t.number, _trial_value(t)) for t in trials if t.state == state]
        points = [(n, v) for n, v in points if v is not None and math.isfinite(v)]
        if points:
            axis.scatter(*zip(*points, strict=True), marker=marker, color=colour,
                         label=f"{state.name.lower()} ({len(points)})")
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
            best = max(best, trial.value)
        if math.isfinite(best):
            xs.append(trial.number)
            best_line.append(best)
    if xs:
        axis.step(xs, best_line, where="post", color="tab:red", label="best so far")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("trial number")
    axis.set_ylabel("validation Sharpe (pruned: last report)")
    axis.set_title(f"study {study.study_name}: optimization history")
    axis.grid(alpha=0.3)
    axis.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _trial_value(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.value is not None:
        return trial.value
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text: counts, a best-trials table, importances."""
    counts = {k: v for k, v in report["counts"].items() if v}
    lines = [f"study {report['study']} in {report['storage']}: {report['trials']} trials {counts}", "",
             "| rank | trial | validation Sharpe | seed | parameters |", "|---|---|---|---|---|"]
    for rank, row in enumerate(report["best"], start=1):
        params = ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
        value = row["value"]
        lines.append(f"| {rank} | {row['number']} | {value:.4f} | {row['seed']} | {params} |")
    if not report["best"]:
        lines.append("| - | - | no complete trial yet | - | - |")
    lines.append("")
    if report["importances"]:
        lines.append("parameter importances (fANOVA): " + ", ".join(
            f"{k} {v:.2f}" for k, v in report["importances"].items()))
    else:
        lines.append(f"parameter importances: none ({report['importance_note']})")
    if report.get("history_png"):
        lines.append(f"optimization history: {report['history_png']}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
