"""Faults injected into every process of a training run, for the DDP parity test's negative
controls. Python imports this module at start-up when its folder is on PYTHONPATH; the fault is
chosen by MEMVP_LAB_TEST_FAULT:

* ``sum_gradients``: DDP sums the ranks' gradients instead of averaging them;
* ``same_shard``: every rank reads rank 0's share of the training data.
"""

import os

FAULT = os.environ.get("MEMVP_LAB_TEST_FAULT")

if FAULT == "sum_gradients":
    import torch.distributed as dist
    from lightning.pytorch.strategies import DDPStrategy

    def _sum_hook(state, bucket):
        return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])

    def _register_sum_hook(self):
        self.model.register_comm_hook(None, _sum_hook)

    DDPStrategy._register_ddp_hooks = _register_sum_hook

elif FAULT == "same_shard":
    from memvp_lab.data import sampling

    _init = sampling.ResumableSampler.__init__

    def _rank_zero_init(self, dataset, num_replicas=1, rank=0, seed=0, shuffle=True):
        _init(self, dataset, num_replicas=num_replicas, rank=0, seed=seed, shuffle=shuffle)

    sampling.ResumableSampler.__init__ = _rank_zero_init

elif FAULT:
    raise ValueError(f"unknown MEMVP_LAB_TEST_FAULT={FAULT!r}")
