"""Test setup: point the data variable at ../shared/data (as CI does) unless it is already set."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_DATA = REPO.parent / "shared" / "data"
if "VAE_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["VAE_DATA_DIR"] = str(SHARED_DATA)

# Notebooks run by the tests print one progress line per training, as under run_all.py.
os.environ.setdefault("VAE_BATCH_RUN", "1")

# Notebooks whose rework (issue 10) is not landed yet, with the reason: they keep their previous
# shape, so the checks of the new conventions skip them, saying why. Empty when all are reworked.
NOT_YET_REWORKED: dict[str, str] = {}

# Notebooks not yet reworked into lecture shape (issue 17, "Lectures, not harnesses"): the shape
# test prints their measures and skips them, saying why. Empty when all are lectures.
NOT_YET_IN_LECTURE_SHAPE: dict[str, str] = {}

# Notebooks with a likelihood that do not score inpainting yet (issue 19), with the reason.
NOT_YET_SCORING_INPAINTING: dict[str, str] = {}

# Notebooks whose likelihood is exact score inpainting exactly, with this call instead of su.score_inpainting.
EXACT_INPAINTING_SCORERS = {"MADE.ipynb": "inpainting.made_inpainting_scores("}  # Inpainting.ipynb's cells
# No likelihood to condition: VQ_VAE's number is an upper bound; Comparison reads results.
NO_INPAINTING_SCORE = {"VQ_VAE.ipynb": "an upper bound, not a likelihood", "Comparison.ipynb": "no model"}


def write_fake_results(name, folder, nll, prior_samples, exact=False, **fields):
    """results/<name>.* as a model notebook writes them, around made-up per-image NLLs `nll`: what
    the tests of readers (Comparison, the notebooks that pair against the Basic VAE) need. An
    `exact` model (MADE) has no ELBO, code or k; `fields` override or add record entries."""
    import shared_utils as su

    mean = float(nll.mean())
    record = dict(
        notebook=name, dataset="mnist", seed=0, epochs=3, device="cpu", train_seconds=3.0,
        test_nll_nats=mean, test_nll_stderr=float(nll.std(ddof=1) / len(nll) ** 0.5),
        nll_importance_samples=0 if exact else 1000, test_elbo_nats=None if exact else -mean - 4,
        model_parameters=1000, active_units=None if exact else 12,
        published={"value": None, "source": "none", "differs": "n/a"},
        history={"val_log_likelihood" if exact else "val_elbo": [-100.0, -98.0, -97.0],
                 "seconds": [1.0, 2.0, 3.0]},
    )  # fmt: skip
    su.write_results(name, {**record, **fields}, {}, str(folder / "results"), test_nll=nll,
                     prior_samples=prior_samples)  # fmt: skip
