"""Visual-knowledge locating and distortion of trained MemVP runs (paper Fig. 5 and Fig. 6).

* ``retrieval``: the retrieval weights of the visual memory slots and answers with slots blocked;
* ``tokens``: where the question's tokens are in a collated prompt;
* ``run``: a finished MemVP run loaded back (``memvp_lab.training.finished_run``) with its memory;
* ``queries``: one-sample batches from task samples or image files;
* ``heatmaps``: the heat-map figures.

``python -m memvp_lab.visualize`` (``memvp_lab.visualize``) puts them together.
"""
