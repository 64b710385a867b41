"""Zero-shot classification with any natural-language-inference model.

Each text is the premise; each configured label becomes a hypothesis ("This text is
about oil and energy."); the NLI model judges whether the premise entails it. Users
describe topics in their own words without training anything, while results still
land on the canonical labels, so windows and alerts work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from processors.envelope.labels import LABELS
from processors.models.base import Model, ModelLoadError
from processors.models.huggingface import classifier_runner, load_classifier, own_labels

DEFAULT_HYPOTHESIS = "This text is about {}."


class ZeroShotModel(Model):
    """NLI zero-shot over a chosen subset of one task's canonical labels.

    `labels` maps canonical labels to the words the hypothesis uses for them. Only
    those compete: the others get probability 0, so the subset should cover what the
    stream carries (a catch-all such as `general_news` gives the rest a place to go).

    Scoring: by default, the entailment logits of a text's hypotheses are softmaxed
    against each other (exactly one label is right). With `multi_label`, each label is
    judged on its own, entailment against contradiction, as Hugging Face's
    zero-shot pipeline does; those independent probabilities are then divided by
    their sum, because a processor's scores add up to 1.
    """

    def __init__(
        self,
        model: str,
        task: str,
        labels: Mapping[str, str],
        hypothesis: str = DEFAULT_HYPOTHESIS,
        multi_label: bool = False,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_tokens: int = 128,
        max_batch_tokens: int | None = None,
        batch_size: int = 256,
        compile: bool = False,
    ) -> None:
        canonical = LABELS[task]
        unknown = sorted(set(labels) - set(canonical))
        if unknown:
            raise ModelLoadError(
                f"zero-shot labels {unknown} are not {task} labels; use {list(canonical)}"
            )
        if len(labels) < 2:
            raise ModelLoadError(
                "zero-shot needs at least two labels: with one, every text would get it "
                "(add a catch-all such as general_news)"
            )
        if "{}" not in hypothesis:
            raise ModelLoadError(f"zero-shot hypothesis {hypothesis!r} needs a {{}} for the label")
        self.model_id = model
        self.tasks = (task,)
        self.multi_label = multi_label
        self.width = len(canonical)
        self.columns = [canonical.index(label) for label in labels]
        self.hypotheses = [hypothesis.format(words) for words in labels.values()]
        tokenizer, network = load_classifier(model)
        self.entailment, self.contradiction = nli_labels(model, own_labels(network))
        self.runner = classifier_runner(
            tokenizer,
            network,
            device=device,
            dtype=dtype,
            max_tokens=max_tokens,
            max_batch_tokens=max_batch_tokens,
            batch_size=batch_size,
            compile=compile,
        )

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        n, k = len(texts), len(self.hypotheses)
        premises = [text for text in texts for _ in range(k)]
        logits = self.runner.run(premises, self.hypotheses * n).view(n, k, -1)
        if self.multi_label:
            pair = logits[..., [self.contradiction, self.entailment]].softmax(-1)[..., 1]
            scores = pair / pair.sum(-1, keepdim=True)
        else:
            scores = logits[..., self.entailment].softmax(-1)
        out = np.zeros((n, self.width), dtype=np.float32)
        out[:, self.columns] = scores.numpy()
        return out


def nli_labels(model: str, labels: Sequence[str]) -> tuple[int, int]:
    """Output indices of entailment and of its opposite (contradiction or not_entailment).

    >>> nli_labels("m", ["entailment", "neutral", "contradiction"])
    (0, 2)
    >>> nli_labels("m", ["ENTAILMENT", "NOT_ENTAILMENT"])
    (0, 1)
    """
    names = [label.lower() for label in labels]
    entail = [i for i, name in enumerate(names) if name.startswith("entail")]
    against = [i for i, name in enumerate(names) if name.startswith(("contradict", "not_entail"))]
    if len(entail) != 1 or len(against) != 1:
        raise ModelLoadError(
            f"model {model!r} is not an NLI model: zero-shot needs one 'entailment' and one "
            f"'contradiction' (or 'not_entailment') label, it has {list(labels)}"
        )
    return entail[0], against[0]
