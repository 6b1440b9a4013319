"""A tqdm progress bar for SB3 training (SB3's own bar needs ``rich``, which we do not add)."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm


class TqdmProgressCallback(BaseCallback):
    """Show timesteps done out of ``total_timesteps`` (``initial`` when resuming)."""

    def __init__(self, total_timesteps: int, initial: int = 0) -> None:
        super().__init__()
        self.total_timesteps = total_timesteps
        self.initial = initial
        self._bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self._bar = tqdm(total=self.total_timesteps, initial=self.initial, unit="step", dynamic_ncols=True,
                         mininterval=2.0)

    def _on_step(self) -> bool:
        assert self._bar is not None
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
