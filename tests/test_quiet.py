"""score_lit.training.quiet: a run's noise filters hold while the run lasts and are gone after it."""

import logging
import warnings

from score_lit.training.quiet import quiet_run

SRUN = "The `srun` command is available on your system: use srun"


def test_a_run_silences_its_noise_only_while_it_lasts(caplog):
    store_level = logging.getLogger("mlflow.store.db.utils").level
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_run():
            warnings.warn(SRUN, UserWarning)  # silenced
            warnings.warn("a warning the user must see", UserWarning)
        warnings.warn(SRUN, UserWarning)  # the run is over: shown again
    assert [str(w.message) for w in seen] == ["a warning the user must see", SRUN]

    mlflow_logger = logging.getLogger("lightning.pytorch.loggers.mlflow")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.loggers.mlflow"):
        with quiet_run():
            mlflow_logger.info("Experiment with name x not found. Creating it.")
            mlflow_logger.info("something else")
        mlflow_logger.info("Experiment with name y not found. Creating it.")
    assert [r.getMessage() for r in caplog.records] == [
        "something else",
        "Experiment with name y not found. Creating it.",
    ]
    assert logging.getLogger("mlflow.store.db.utils").level == store_level  # the level is back
