"""Efficiency benchmarks (``python -m memvp_lab.bench study=<name>``): what each method costs.

Cost is a property of the architecture, not of trained weights, so models are built at their real
size (random weights) and fed synthetic batches whose prompt, answer and visual lengths are exactly
the configured ones (a task's average lengths). One module per kind of study:

* ``compare``      methods on one backbone, timed interleaved: train step, inference, memory, FLOPs
* ``flops_table``  LM FLOPs per sample of every method x backbone x task (paper Table 1, Table 8)
* ``text_length``  latency with and without input-space visual tokens across text lengths (Fig. 2)
* ``overhead``     MemVP against the same language model on the text alone (Eq. 13 and 15)
* ``prefix_cache_study`` MemVP training steps with and without the frozen-prefix cache

``synthetic_batches`` builds the batches, ``measure`` holds the measurements they share, ``plots`` the figures.
"""
