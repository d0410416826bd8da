"""Training and evaluation of the injection classifier (``ragd finetune injection-classifier``).

Recipe (deterministic):

- deepset's train file is split 80/20, stratified by label (seed 0); the 20% is the **dev** split,
  never used for fitting or for choosing the threshold.
- Generated prompts (:mod:`ragd.guardrails.synthetic_prompts`) are added, except whole template
  families listed in :data:`HELDOUT_FAMILIES`, which measure generalisation to unseen phrasings;
  so are benign requests derived from HotpotQA/SciFact text (a fifth of them, split by subject,
  held out).
- deepset rows weigh 3, generated and derived rows 1; a class-balanced logistic-regression head is fitted on
  [MiniLM embedding | hashed char n-grams].
- The threshold is chosen on 5-fold out-of-fold scores of the training rows: the lowest threshold
  whose benign false-positive rate is at most ``target_fpr`` (default 2%).
- Reported: dev precision/recall/FPR (classifier alone and with the rules), FPR/recall on the
  held-out generated families and on hand-written held-out sets in ``data/``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragd.guardrails.injection_classifier import HashingSpec, InjectionClassifier, segments
from ragd.guardrails.injection_rules import match_rules
from ragd.guardrails.synthetic_prompts import derived_benign, generate
from ragd.guardrails.text_encoder import CachedEncoder

DATA_DIR = Path(__file__).parent / "data"
#: Hand-written held-out sets (never trained on): ``heldout_{benign,attacks}_handwritten[_b].jsonl``.
HELDOUT_GLOB = "heldout_*.jsonl"
HELDOUT_FAMILIES = frozenset(
    {
        "benign:advice",
        "benign:itinerary",
        "benign:outline",
        "benign:title",
        "attack:secret",
        "attack:encoding",
    }
)
DEEPSET_WEIGHT = 3.0


@dataclass(frozen=True)
class Example:
    """A labelled text (1 = attack) and where it came from."""

    text: str
    label: int
    source: str


def read_jsonl(path: Path) -> list[Example]:
    """``{"text", "label"}`` rows; ``ValueError`` naming the line for anything else."""
    rows: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text, label = obj["text"], int(obj["label"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{path}:{n}: expected a JSON object with 'text' and 'label' ({exc})"
                ) from exc
            if not isinstance(text, str) or label not in (0, 1):
                raise ValueError(f"{path}:{n}: 'text' must be a string and 'label' 0 or 1")
            rows.append(Example(text=text, label=label, source=str(obj.get("source", path.stem))))
    return rows


def stratified_split(
    rows: Sequence[Example], dev_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Split per label so that dev has ``dev_fraction`` of each class."""
    rng = random.Random(seed)
    train: list[Example] = []
    dev: list[Example] = []
    for label in (0, 1):
        group = [r for r in rows if r.label == label]
        rng.shuffle(group)
        cut = round(len(group) * dev_fraction)
        dev.extend(group[:cut])
        train.extend(group[cut:])
    return train, dev


def rates(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and false-positive rate at ``threshold``."""
    pred = np.asarray(scores) >= threshold
    y = np.asarray(labels) == 1
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {
        "n": len(pred),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "fpr": round(fpr, 4),
    }


def _fit(x: Any, y: np.ndarray, w: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit(x, y, sample_weight=w)
    return np.asarray(model.coef_[0], dtype=np.float64), float(model.intercept_[0])


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold (max recall) whose benign FPR is <= ``target_fpr``; at least 0.5."""
    benign = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(target_fpr * len(benign)))
    cut = float(benign[allowed]) + 1e-6 if allowed < len(benign) else 0.0
    return max(0.5, min(cut, 0.99))


def generated_examples(
    n_benign: int = 2400, n_attack: int = 1200, corpus_dir: Path | None = None
) -> tuple[list[Example], list[Example]]:
    """(train, held out) generated prompts: template families plus, when ``corpus_dir`` has
    HotpotQA/SciFact, benign requests derived from their questions, titles and abstracts."""
    generated = generate(n_benign=n_benign, n_attack=n_attack)
    train = [Example(p.text, p.label, p.family) for p in generated if p.family not in HELDOUT_FAMILIES]
    held = [Example(p.text, p.label, p.family) for p in generated if p.family in HELDOUT_FAMILIES]
    if corpus_dir is not None:
        derived_train, derived_held = derived_benign(corpus_dir)
        train += [Example(p.text, p.label, "derived") for p in derived_train]
        held += [Example(p.text, p.label, "derived") for p in derived_held]
    return train, held


def train_classifier(
    deepset_path: Path,
    encoder: CachedEncoder,
    *,
    c: float = 32.0,
    target_fpr: float = 0.02,
    n_benign: int = 2400,
    n_attack: int = 1200,
    folds: int = 5,
    seed: int = 0,
    corpus_dir: Path | None = None,
) -> tuple[InjectionClassifier, dict[str, Any]]:
    """Train on deepset's train split plus generated prompts; return the model and its metrics."""
    deepset = read_jsonl(deepset_path)
    if len({r.label for r in deepset}) < 2:
        raise ValueError(f"{deepset_path} must contain both labels")
    train, dev = stratified_split(deepset, seed=seed)
    gen_train, gen_held = generated_examples(n_benign, n_attack, corpus_dir)
    rows = train + gen_train
    texts = [r.text for r in rows]
    y = np.asarray([r.label for r in rows])
    w = np.asarray([DEEPSET_WEIGHT if r.source.startswith("deepset") else 1.0 for r in rows])

    spec = HashingSpec()
    probe = InjectionClassifier(
        coef=np.zeros(384 + spec.n_features), intercept=0.0, threshold=0.5, hashing=spec
    )
    x = probe.features(encoder.encode(texts), texts)

    # Out-of-fold scores (with the same segment max as inference) choose the threshold.
    rng = np.random.RandomState(seed)
    fold_of = rng.randint(0, folds, size=len(rows))
    oof = np.zeros(len(rows))
    for k in range(folds):
        coef, intercept = _fit(x[fold_of != k], y[fold_of != k], w[fold_of != k], c)
        fold_model = InjectionClassifier(coef=coef, intercept=intercept, threshold=0.5, hashing=spec)
        idx = np.flatnonzero(fold_of == k)
        oof[idx] = fold_model.score_many([texts[i] for i in idx], encoder, floor=0.0)
    threshold = choose_threshold(oof, y, target_fpr)

    coef, intercept = _fit(x, y, w, c)
    model = InjectionClassifier(coef=coef, intercept=intercept, threshold=threshold, hashing=spec)
    metrics = evaluate_model(
        model,
        encoder,
        dev=dev,
        generated_heldout=[e for e in gen_held if e.source != "derived"],
        derived_heldout=[e for e in gen_held if e.source == "derived"],
    )
    metrics["training"] = {
        "deepset_train": len(train),
        "deepset_dev": len(dev),
        "generated_train": len(gen_train),
        "generated_heldout": len(gen_held),
        "heldout_families": sorted(HELDOUT_FAMILIES),
        "C": c,
        "target_fpr": target_fpr,
        "threshold": round(threshold, 4),
        "oof": rates(list(oof), list(y), threshold),
        "split": "deepset train file, stratified by label, 20% dev, seed 0",
    }
    model.metrics = metrics
    return model, metrics


def evaluate_model(
    model: InjectionClassifier,
    encoder: CachedEncoder,
    *,
    dev: Sequence[Example],
    generated_heldout: Sequence[Example] = (),
    derived_heldout: Sequence[Example] = (),
) -> dict[str, Any]:
    """Metrics of the classifier alone and of classifier-or-rules on every held-out set."""
    sets: dict[str, list[Example]] = {"dev": list(dev)}
    if generated_heldout:
        sets["generated_heldout_families"] = list(generated_heldout)
    if derived_heldout:
        sets["derived_heldout_hotpotqa_scifact"] = list(derived_heldout)
    for path in sorted(DATA_DIR.glob(HELDOUT_GLOB)):
        sets[path.stem] = read_jsonl(path)
    out: dict[str, Any] = {}
    for name, rows in sets.items():
        texts = [r.text for r in rows]
        labels = [r.label for r in rows]
        scores = model.score_many(texts, encoder)
        combined = [1.0 if match_rules(t) else s for t, s in zip(texts, scores, strict=True)]
        out[name] = {
            "classifier": rates(scores, labels, model.threshold),
            "classifier_or_rules": rates(combined, labels, model.threshold),
        }
    return out


__all__ = [
    "Example",
    "evaluate_model",
    "rates",
    "read_jsonl",
    "segments",
    "stratified_split",
    "train_classifier",
]
