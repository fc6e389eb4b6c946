"""Where to annotate next: patches ranked by the model's own uncertainty (issue 15).

``suggest_patches(config, stop) -> Iterator[Event]`` (``job.py``) returns a ``SuggestResult``;
the settings are a ``SuggestConfig`` (``config.py``); the per-pixel signals are in
``uncertainty.py`` and the ranking, pure numpy, in ``core/suggest_ranking.py``.
"""

from empanada_desktop.backend.suggest.config import DEFAULT_WEIGHTS, SIGNALS, SuggestConfig
from empanada_desktop.backend.suggest.job import SuggestedPatch, SuggestResult, suggest_patches

__all__ = ["DEFAULT_WEIGHTS", "SIGNALS", "SuggestConfig", "SuggestResult", "SuggestedPatch", "suggest_patches"]
