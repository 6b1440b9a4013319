"""Sub-commands of the ``himari`` CLI, one module per topic; see :mod:`experiments.cli`."""
