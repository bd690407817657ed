"""Per-sample scores averaged overall and per group, gathered across processes.

Every metric that scores samples independently (VQA accuracy, exact match, multiple-choice and
ScienceQA accuracy) builds on ``GroupedMean``: ``update`` appends per-sample scores, the groups
each sample belongs to (any number) and its dataset index; ``compute`` gathers all processes and
counts each dataset index once, so the repeats a distributed sampler adds to even out its
shards do not count twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def _cat(x):
    return dim_zero_cat(x) if isinstance(x, list) else x


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """Mask keeping the first occurrence of each non-negative index (negative: always kept)."""
    keep = index < 0
    if not keep.all():
        unique, inverse = torch.unique(index, return_inverse=True)
        order = torch.arange(len(index), device=index.device)
        first = torch.full((len(unique),), len(index), device=index.device).scatter_reduce(
            0, inverse, order, reduce="amin"
        )
        keep[first] = True
    return keep


class GroupedMean(Metric):
    """Mean of per-sample scores, overall and per named group.

    Args:
        groups: the group names reported separately; memberships outside this list are ignored.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, groups: Sequence[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.groups = tuple(groups)
        self.add_state("sample_index", default=[], dist_reduce_fx="cat")
        self.add_state("score", default=[], dist_reduce_fx="cat")
        self.add_state("member", default=[], dist_reduce_fx="cat")

    def add(
        self,
        scores: Sequence[float],
        memberships: Sequence[Sequence[str]] | None = None,
        indices: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        n = len(scores)
        self.score.append(torch.tensor(list(scores), dtype=torch.float64, device=self.device))
        lookup = {g: i for i, g in enumerate(self.groups)}
        member = torch.zeros(n, max(1, len(self.groups)), dtype=torch.bool)
        for row, names in enumerate(memberships or [()] * n):
            for name in names:
                if name in lookup:
                    member[row, lookup[name]] = True
        self.member.append(member.to(self.device))
        index = torch.as_tensor(indices, dtype=torch.long) if indices is not None else torch.full((n,), -1)
        self.sample_index.append(index.to(self.device))

    def update(
        self,
        scores: Sequence[float],
        memberships: Sequence[Sequence[str]] | None = None,
        indices: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        """Scores computed elsewhere; subclasses score predictions themselves."""
        self.add(scores, memberships, indices)

    def compute(self) -> dict[str, torch.Tensor]:
        """Returns ``{"overall": ..., <group>: ...}``; groups without samples are left out."""
        if isinstance(self.score, list) and not self.score:
            return {"overall": torch.tensor(0.0, dtype=torch.float64)}
        index, score, member = _cat(self.sample_index), _cat(self.score), _cat(self.member)
        keep = first_occurrence(index)
        score, member = score[keep], member[keep]
        out = {"overall": score.mean() if len(score) else torch.tensor(0.0, dtype=torch.float64)}
        for i, g in enumerate(self.groups):
            if member[:, i].any():
                out[g] = score[member[:, i]].mean()
        return out


class GatheredRecords(Metric):
    """Keeps one JSON-able record per evaluated sample and gathers them from all processes.

    For corpus-level metrics (CIDEr needs every caption at once): records travel as UTF-8 bytes,
    each dataset index counts once, and ``records()`` returns them in dataset order.
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("payload", default=[], dist_reduce_fx="cat")
        self.add_state("lengths", default=[], dist_reduce_fx="cat")
        self.add_state("sample_index", default=[], dist_reduce_fx="cat")

    def add(self, records: Sequence[dict], indices: Sequence[int] | torch.Tensor) -> None:
        import json

        blobs = [json.dumps(r).encode() for r in records]
        if not blobs:
            return
        self.payload.append(torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8).to(self.device))
        self.lengths.append(torch.tensor([len(b) for b in blobs], dtype=torch.long, device=self.device))
        self.sample_index.append(torch.as_tensor(indices, dtype=torch.long).to(self.device))

    def records(self) -> list[dict]:
        import json

        if isinstance(self.payload, list) and not self.payload:
            return []
        payload, lengths, index = _cat(self.payload), _cat(self.lengths), _cat(self.sample_index)
        data = bytes(payload.cpu().numpy())
        offsets = [0, *torch.cumsum(lengths, 0).tolist()]
        keep = first_occurrence(index)
        rows = sorted((int(index[i]), i) for i in range(len(index)) if keep[i])
        return [json.loads(data[offsets[i] : offsets[i + 1]]) for _, i in rows]

    def update(self, records: Sequence[dict], indices: Sequence[int] | torch.Tensor) -> None:
        self.add(records, indices)

    def compute(self):  # subclasses turn the records into scores
        return self.records()
