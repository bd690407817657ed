"""A training order that is a pure function of (seed, epoch), so a run can stop anywhere and resume.

``ResumableSampler`` shuffles with ``DistributedSampler``'s seeded per-epoch permutation (one shard
per process, also for a single process) and can start an epoch after the samples a killed run
had already trained on. It yields *keys* that encode (epoch, index); ``EpochKeyedDataset`` decodes
them and seeds Python's ``random`` from (seed, epoch, index) around each item, so a dataset's own
random choices (e.g. which reference answer becomes the target) are the same whatever the worker,
the number of processes or the point a run resumed from.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler


class EpochKeyedDataset(Dataset):
    """``dataset`` indexed by the keys of ``ResumableSampler`` (``epoch * len + index``)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int):
        epoch, index = divmod(int(key), len(self.dataset))
        outer = random.getstate()
        random.seed(f"{self.seed}/{epoch}/{index}")  # str seeds hash deterministically in every process
        try:
            return self.dataset[index]
        finally:
            random.setstate(outer)


class ResumableSampler(DistributedSampler):
    """This process's share of a seeded shuffle per epoch, as keys for ``EpochKeyedDataset``.

    ``resume(epoch, consumed)`` makes the next pass over ``epoch`` skip the first ``consumed``
    samples of this process's share (those a checkpointed run already trained on); other epochs
    are complete.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self._resume: tuple[int, int] | None = None

    def resume(self, epoch: int, consumed: int) -> None:
        if consumed < 0 or consumed > self.num_samples:
            raise ValueError(f"cannot resume after {consumed} samples: an epoch has {self.num_samples} per process")
        self._resume = (epoch, consumed)

    def __iter__(self) -> Iterator[int]:
        # A generator: the order is drawn when iteration starts, after the loop has set the epoch.
        skip = 0
        if self._resume is not None and self._resume[0] <= self.epoch:
            if self._resume[0] == self.epoch:
                skip = self._resume[1]
            self._resume = None
        offset = self.epoch * len(self.dataset)
        for index in list(super().__iter__())[skip:]:
            yield offset + index
