"""Caption metrics through pycocoevalcap: BLEU-4, METEOR, ROUGE-L, CIDEr(-D).

Captions and references are tokenised by the Stanford PTB tokenizer pycocoevalcap ships (a Java
program, lower-casing and removing punctuation), as the COCO caption evaluation does. SPICE is
left out: it downloads Stanford CoreNLP when first run.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import torch

from memvp_lab.metrics.grouped import GatheredRecords

JAVA_HINT = (
    "pycocoevalcap's PTB tokenizer needs a Java runtime ('java' on PATH): `make setup` installs "
    "one where it can (Debian: apt-get install default-jre-headless)"
)


def caption_scores(predictions: dict, references: dict, meteor: bool = True) -> dict[str, float]:
    """Corpus scores of ``predictions`` (id -> caption) against ``references`` (id -> captions).

    Returns ``bleu4``, ``meteor`` (if asked), ``rouge_l`` and ``cider`` on pycocoevalcap's scale
    (CIDEr 1.16 is the "116" of papers).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not predictions:
        raise ValueError("no captions to score")
    missing = [k for k in predictions if k not in references]
    if missing:
        raise KeyError(f"no reference captions for id {missing[0]!r}")
    if shutil.which("java") is None:
        raise RuntimeError(JAVA_HINT)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in references[k]] for k in predictions})
    res = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in predictions})
    out = {
        "bleu4": Bleu(4).compute_score(gts, res, verbose=0)[0][3],
        "rouge_l": Rouge().compute_score(gts, res)[0],
        "cider": Cider().compute_score(gts, res)[0],
    }
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()  # a Java subprocess, stopped when the scorer is garbage-collected
        out["meteor"] = scorer.compute_score(gts, res)[0]
        del scorer
    return {k: float(v) for k, v in out.items()}


class CaptionScores(GatheredRecords):
    """Gathers (prediction, references) per image from every process; ``compute`` scores them all."""

    def __init__(self, meteor: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.meteor = meteor

    def update(
        self, predictions: Sequence[str], references: Sequence[Sequence[str]], indices: Sequence[int] | torch.Tensor
    ) -> None:
        self.add([{"p": p, "r": list(r)} for p, r in zip(predictions, references)], indices)

    def compute(self) -> dict[str, torch.Tensor]:
        records = self.records()
        if not records:
            return {}
        scores = caption_scores(
            {i: r["p"] for i, r in enumerate(records)}, {i: r["r"] for i, r in enumerate(records)}, meteor=self.meteor
        )
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in scores.items()}
