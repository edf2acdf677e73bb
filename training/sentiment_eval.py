"""Measure sentiment heads on the held-out headlines: ``python -m training.sentiment_eval``.

Prints accuracy and macro-F1 on the test set for each head of
:mod:`training.sentiment_heads` on the same encoder, and for the loaded model as it
scores (``model``: the softmax head, or a classifier's own logits when
``--model-dir`` names a FinBERT-style directory). ``--cv`` also prints the 5-fold
cross-validation accuracy on the training set of the softmax head for each L2 penalty,
on the last layer's sentence embedding and on every layer's pooled states: that is
how the features and :data:`training.sentiment_heads.SOFTMAX_L2` were chosen — the
test set plays no part in those choices.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.sentiment import TEST_PATH, TRAIN_PATH, SentimentModel, load_labeled
from training.sentiment_heads import (
    LABELS,
    PROTOTYPES,
    CentroidHead,
    Head,
    PrototypeHead,
    SoftmaxHead,
    label_ids,
)

#: L2 penalties tried by :func:`cross_validate_l2`.
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    f1: dict[str, float]
    #: ``confusion[true][predicted]`` counts.
    confusion: dict[str, dict[str, int]]


def metrics(true: Sequence[str], predicted: Sequence[str]) -> Metrics:
    """Accuracy, per-label F1 and their unweighted mean (macro-F1) over :data:`LABELS`."""
    if len(true) != len(predicted) or not true:
        raise ValueError("need as many predictions as labels, and at least one")
    confusion = {t: {p: 0 for p in LABELS} for t in LABELS}
    for t, p in zip(true, predicted, strict=True):
        confusion[t][p] += 1
    f1 = {}
    for label in LABELS:
        tp = confusion[label][label]
        fp = sum(confusion[t][label] for t in LABELS if t != label)
        fn = sum(confusion[label][p] for p in LABELS if p != label)
        f1[label] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    accuracy = sum(confusion[label][label] for label in LABELS) / len(true)
    return Metrics(accuracy, sum(f1.values()) / len(LABELS), f1, confusion)


def _labels_of(probabilities: torch.Tensor) -> list[str]:
    return [LABELS[i] for i in probabilities.argmax(dim=-1).tolist()]


def evaluate_model(model: SentimentModel) -> Metrics:
    """The model's own labels on the held-out test set."""
    test = load_labeled(TEST_PATH)
    return metrics([r.label for r in test], [s.label for s in model.score([r.text for r in test])])


def _last_layer(model: SentimentModel, features: torch.Tensor) -> torch.Tensor:
    """The sentence embedding inside :meth:`SentimentModel.features` (its last block),
    which saves a second pass through the encoder."""
    width = model.network.config.hidden_size
    return torch.nn.functional.normalize(features[:, -width:], dim=-1)


def compare_heads(model: SentimentModel) -> dict[str, Metrics]:
    """Each head on ``model``'s encoder, fitted on the training set where it is fitted at
    all, measured on the test set. ``softmax`` is the one the model uses (every layer's
    pooled states); ``softmax_last_layer`` reads the sentence embedding alone."""
    train, test = load_labeled(TRAIN_PATH), load_labeled(TEST_PATH)
    train_texts, test_texts = [r.text for r in train], [r.text for r in test]
    train_y = label_ids([r.label for r in train])
    train_f, test_f = model.features(train_texts), model.features(test_texts)
    train_e, test_e = _last_layer(model, train_f), _last_layer(model, test_f)
    heads: dict[str, tuple[Head, torch.Tensor]] = {
        "prototype": (PrototypeHead.from_embeddings(
            {label: model.embed(list(sentences)) for label, sentences in PROTOTYPES.items()}),
            test_e),
        "centroid": (CentroidHead.fit(train_e, train_y), test_e),
        "softmax_last_layer": (SoftmaxHead.fit(train_e, train_y), test_e),
        "softmax": (SoftmaxHead.fit(train_f, train_y), test_f),
    }
    truth = [r.label for r in test]
    return {name: metrics(truth, _labels_of(head.probabilities(x)))
            for name, (head, x) in heads.items()}


def cross_validate_l2(model: SentimentModel, *, folds: int = 5, seed: int = 0,
                      grid: Sequence[float] = L2_GRID) -> dict[str, dict[float, float]]:
    """Mean fold accuracy of the softmax head per L2 penalty, on the training set only,
    on the sentence embedding (``last_layer``) and on every layer (``all_layers``)."""
    train = load_labeled(TRAIN_PATH)
    texts = [r.text for r in train]
    y = label_ids([r.label for r in train])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    parts = order.chunk(folds)
    out: dict[str, dict[float, float]] = {}
    features = model.features(texts)
    for name, x in (("last_layer", _last_layer(model, features)), ("all_layers", features)):
        out[name] = {}
        for l2 in grid:
            accuracies = []
            for k, held in enumerate(parts):
                fit_idx = torch.cat([p for j, p in enumerate(parts) if j != k])
                head = SoftmaxHead.fit(x[fit_idx], y[fit_idx], l2=l2)
                accuracies.append((head.probabilities(x[held]).argmax(-1) == y[held])
                                  .double().mean().item())
            out[name][l2] = sum(accuracies) / len(accuracies)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=None, help="default: the wheel's MiniLM")
    parser.add_argument("--cv", action="store_true", help="cross-validate the L2 penalty")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    model = SentimentModel.load(args.model_dir)
    results = {"model": evaluate_model(model)}
    if model.kind == "embedding":
        results |= compare_heads(model)
    report: dict = {"model_dir": str(model.model_dir), "kind": model.kind,
                    "test_size": len(load_labeled(TEST_PATH)),
                    "results": {name: m.__dict__ for name, m in results.items()}}
    if args.cv and model.kind == "embedding":
        report["cv_accuracy_by_l2"] = cross_validate_l2(model)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{model.version} ({model.kind}), held-out test set of {report['test_size']}")
    for name, m in results.items():
        print(f"  {name:18s} accuracy {m.accuracy:6.1%}  macro-F1 {m.macro_f1:6.1%}  "
              + "  ".join(f"F1 {label} {m.f1[label]:.3f}" for label in LABELS))
    folds = 5
    for features, by_l2 in report.get("cv_accuracy_by_l2", {}).items():
        print(f"  {folds}-fold CV accuracy on the training set, {features}: "
              + "  ".join(f"l2={l2:g} {accuracy:.3f}" for l2, accuracy in by_l2.items()))


if __name__ == "__main__":
    main()
