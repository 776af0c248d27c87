"""One cycle of the loop as plain functions over the artifact store and the service interfaces, one module a stage.

The Dagster assets call exactly these functions (and only add metadata), and the plain-call benchmark runs
them directly, so both measure the same work:

- ``champion_eval.py``  the champion before the cycle and its scores
- ``evaluation.py``     ``eval_summary``, ``hard_dims``
- ``dataset.py``        ``augmented_pairs``, ``split_dataset``
- ``submission.py``     ``training_submission``
- ``polling.py``        the sensor's polling and re-submission (``attempts.json``)
- ``validation.py``     ``validation_snapshot``
- ``promotion.py``      ``promotion_decision``
- ``plain_runner.py``   the whole cycle without Dagster
"""

from __future__ import annotations

from kotone_pipeline.cycle.documents import STAGE_DOCUMENTS

# The documents a cycle writes, in order; the last one present is the cycle's stage.
STAGES: tuple[str, ...] = tuple(doc.NAME for doc in STAGE_DOCUMENTS)
