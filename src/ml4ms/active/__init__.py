"""Active learning: a closed loop from a model's uncertainty to new labels, every label kept in an ASE database.

One loop with pluggable parts, each in its own module:

* :mod:`~ml4ms.active.config`: the run's TOML config, checked before any work;
* :mod:`~ml4ms.active.pool`: the candidate structures (a file, or generated alloys);
* :mod:`~ml4ms.active.oracles`: what labels a structure (an ASE calculator by
  import path, or a replayed labelled pool), in worker processes with a time
  limit and retries;
* :mod:`~ml4ms.active.strategies`: acquisition scores (uncertainty, expected
  improvement, confidence bound, random), farthest-point sampling without a
  model, and the batch with FPS diversity;
* :mod:`~ml4ms.active.otf`: on-the-fly MD for potentials (a committee's MD,
  labels where its force spread passes a threshold, retraining);
* :mod:`~ml4ms.active.store`: the ASE database of labels, failures and rounds;
* :mod:`~ml4ms.active.loop`: the rounds, resumable after any kill;
* :mod:`~ml4ms.active.report`: status, learning curves, calibration and discovery
  (the share of a pool's best candidates found) from the store.

The command line is ``ml4ms active run | status | report``. Names are imported
lazily, so ``import ml4ms.active`` (and an oracle's worker process) stays light.
"""

import importlib

_NAMES = {
    "ActiveConfig": "config", "read_config": "config", "parse_config": "config",
    "random_alloys": "pool", "fingerprint": "pool",
    "CalculatorOracle": "oracles", "ReplayOracle": "oracles", "OracleRunner": "oracles", "load_calculator": "oracles",
    "acquisition_scores": "strategies", "choose_batch": "strategies", "expected_improvement": "strategies",
    "confidence_bound": "strategies", "farthest_from": "strategies",
    "LabelStore": "store",
    "run_loop": "loop", "ActiveLoop": "loop",
    "summarize": "report", "write_report": "report", "discovery_curve": "report",
    "OnTheFlyMD": "otf", "committee_md": "otf", "force_uncertainty": "otf",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
