"""What the champion does on requests people wrote: the hand-written human set, per language.

The local model (default features: sentence encoder + TF-IDF + the lexicon's reading) against the
constant and rule baselines, and against its own feature ablations, all fitted on the same base set
in this process. The human set is never trained on; these numbers are the project's measure.
"""

from __future__ import annotations

from benchmarks import Benchmark, Row
from kotone_pipeline.domain.data.base_data import build_base_set, load_eval_set, load_human_set
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair
from kotone_pipeline.domain.model.baselines import ConstantBaseline, RuleBaseline
from kotone_pipeline.domain.model.local_model import LocalTextModel
from kotone_pipeline.domain.model.metrics import evaluate
from kotone_pipeline.domain.model.predictor import Predictor

# name -> hyper-parameters; "local" is the default the loop trains.
VARIANTS: dict[str, LocalHyperParams] = {
    "local": LocalHyperParams(),
    "tfidf_only": LocalHyperParams(use_encoder=False, use_lexicon=False),
    "encoder_tfidf": LocalHyperParams(use_lexicon=False),
    "lexicon_tfidf": LocalHyperParams(use_encoder=False),
}


def _mae(model: Predictor, pairs: list[Pair]) -> float:
    return evaluate(model, pairs, "human")[0].vector_mae


def run(repeats: int) -> dict[str, float]:
    # Accuracy is deterministic: one fit per variant, whatever ``repeats`` says.
    base, _ = build_base_set()
    human = load_human_set()
    by_lang = {lang: [p for p in human if p.meta.get("lang") == lang] for lang in ("en", "ja")}
    constant = ConstantBaseline(base)
    models: dict[str, Predictor] = {"constant": constant, "rule": RuleBaseline.from_train(base)}
    for name, hp in VARIANTS.items():
        models[name] = LocalTextModel(model_id=name).fit(base, hp)
    results: dict[str, float] = {}
    for name, model in models.items():
        results[f"human_mae_{name}"] = _mae(model, by_lang["en"])
        results[f"human_mae_{name}_ja"] = _mae(model, by_lang["ja"])
        results[f"human_mae_{name}_all"] = _mae(model, human)
    holdout = load_eval_set("holdout")
    results["holdout_mae_local"] = evaluate(models["local"], holdout, "holdout")[0].vector_mae
    results["holdout_mae_rule"] = evaluate(models["rule"], holdout, "holdout")[0].vector_mae
    results["human_rows_en"], results["human_rows_ja"] = float(len(by_lang["en"])), float(len(by_lang["ja"]))
    return results


def rows(r: dict[str, float], repeats: int) -> list[Row]:
    out = []
    for lang, suffix in (("English", ""), ("Japanese", "_ja")):
        constant = r[f"human_mae_constant{suffix}"]
        n = r[f"human_rows_{'en' if not suffix else 'ja'}"]
        for name, label in (
            ("local", "local model (default)"),
            ("rule", "rule baseline (lexicon reader)"),
            ("tfidf_only", "TF-IDF only"),
            ("encoder_tfidf", "encoder + TF-IDF"),
            ("lexicon_tfidf", "lexicon + TF-IDF"),
        ):
            value = r[f"human_mae_{name}{suffix}"]
            out.append(Row(f"human set {lang} ({n:.0f}), {label}", value, "MAE", 1, value / constant, "constant"))
        out.append(Row(f"human set {lang}, constant baseline", constant, "MAE", 1))
    out.append(Row("holdout (new teacher), local model", r["holdout_mae_local"], "MAE", 1))
    out.append(Row("holdout (new teacher), rule baseline", r["holdout_mae_rule"], "MAE", 1))
    return out


BENCHMARKS = [Benchmark("human", run, rows)]
