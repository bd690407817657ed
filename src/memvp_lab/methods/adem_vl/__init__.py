"""ADEM-VL (arXiv 2410.17779): MemVP's successor. Parameter-free cross-attention from each FFN's
input into shared visual keys/values, added to the FFN's output; multiscale visual features; an
adaptive drop of each text token's weakest visual entries; one projected [CLS] input token."""

from memvp_lab.methods.adem_vl.method import AdemVLConfig

__all__ = ["AdemVLConfig"]
