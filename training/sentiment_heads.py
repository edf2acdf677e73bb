"""Heads that turn sentence embeddings into sentiment probabilities.

A head maps L2-normalised embeddings (``n × d``) to probabilities over :data:`LABELS`
(``n × 3``). Three are kept so that :mod:`training.sentiment_eval` can compare them on
the same encoder; :class:`training.sentiment.SentimentModel` uses :class:`SoftmaxHead`
on every layer's pooled states, the best by cross-validation and on the held-out
headlines (see that module).

* :class:`PrototypeHead`: zero-shot; cosine similarity to the mean embedding of a few
  hand-written prototype sentences per label (:data:`PROTOTYPES`).
* :class:`CentroidHead`: cosine similarity to each label's mean training embedding.
* :class:`SoftmaxHead`: multinomial logistic regression on the embeddings, fitted by
  full-batch L-BFGS in float64 from zero weights, so the same data gives the same
  weights on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

Label = Literal["negative", "neutral", "positive"]
#: Label order of every probability column; ``score = P(positive) - P(negative)``.
LABELS: tuple[Label, ...] = ("negative", "neutral", "positive")

#: L2 penalty of :class:`SoftmaxHead` (on the weights, not the bias). Chosen by 5-fold
#: cross-validation on the training set only (``python -m training.sentiment_eval --cv``):
#: 3e-4 had the best mean fold accuracy among 1e-4 … 3e-2, on the all-layer features
#: the model uses as on the last layer alone.
SOFTMAX_L2 = 3e-4

#: Softmax temperature of the cosine heads: cosines of sentence embeddings differ by a
#: few hundredths between labels, so they are sharpened before the softmax.
COSINE_TEMPERATURE = 0.05

#: Prototype sentences of the zero-shot head, written for this project.
PROTOTYPES: dict[Label, tuple[str, ...]] = {
    "negative": (
        "Prices crash and investors suffer heavy losses",
        "The company defaults, is hacked and faces a lawsuit",
        "Bad news: markets plunge on fraud and bankruptcy fears",
    ),
    "neutral": (
        "The company announces the date of a scheduled meeting",
        "Prices are unchanged and data is due next week",
        "A routine report was published as planned",
    ),
    "positive": (
        "Prices surge to a record high and investors gain",
        "The company reports strong growth and record profits",
        "Good news: markets rally on upgrades and approvals",
    ),
}


class Head(Protocol):
    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``n × d`` normalised embeddings → ``n × 3`` probabilities in :data:`LABELS` order."""
        ...


def label_ids(labels: Sequence[str]) -> torch.Tensor:
    """Label names → indices into :data:`LABELS`; an unknown name is a ``ValueError``."""
    try:
        return torch.tensor([LABELS.index(label) for label in labels], dtype=torch.long)
    except ValueError as e:
        raise ValueError(f"labels must be among {LABELS}: {e}") from e


class _CosineHead:
    """Softmax over scaled cosine similarities to one unit vector per label."""

    def __init__(self, anchors: torch.Tensor, *, temperature: float = COSINE_TEMPERATURE) -> None:
        self.anchors = F.normalize(anchors.double(), dim=-1)
        self.temperature = temperature

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(embeddings.double(), dim=-1) @ self.anchors.T
        return torch.softmax(cosines / self.temperature, dim=-1)


class PrototypeHead(_CosineHead):
    """Zero-shot: each label's anchor is the mean embedding of its prototype sentences."""

    @classmethod
    def from_embeddings(cls, prototype_embeddings: dict[str, torch.Tensor]) -> PrototypeHead:
        return cls(torch.stack([prototype_embeddings[label].double().mean(0) for label in LABELS]))


class CentroidHead(_CosineHead):
    """Each label's anchor is the mean embedding of its training examples."""

    @classmethod
    def fit(cls, embeddings: torch.Tensor, labels: torch.Tensor) -> CentroidHead:
        return cls(torch.stack([embeddings[labels == i].double().mean(0)
                                for i in range(len(LABELS))]))


class SoftmaxHead:
    """Multinomial logistic regression: ``softmax(x W + b)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight = weight
        self.bias = bias

    @classmethod
    def fit(cls, embeddings: torch.Tensor, labels: torch.Tensor, *,
            l2: float = SOFTMAX_L2) -> SoftmaxHead:
        """Minimise mean cross-entropy + ``l2 · |W|²`` with full-batch L-BFGS.

        The problem is strictly convex, so the optimum does not depend on the start;
        starting from zeros in float64 with a fixed iteration budget also makes the
        path, and so the weights, identical from run to run. A few hundred examples
        of 384 dimensions take well under a second on one core.
        """
        if embeddings.shape[0] != labels.shape[0]:
            raise ValueError("one label per embedding is needed")
        missing = set(range(len(LABELS))) - set(labels.tolist())
        if missing:
            raise ValueError(f"no training example of {[LABELS[i] for i in sorted(missing)]}")
        x = embeddings.detach().double().cpu()
        y = labels.cpu()
        weight = torch.zeros(x.shape[1], len(LABELS), dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(len(LABELS), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, history_size=20,
                                      tolerance_grad=1e-9, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return cls(weight.detach(), bias.detach())

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        return torch.softmax(embeddings.double().cpu() @ self.weight + self.bias, dim=-1)
