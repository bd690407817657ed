"""Numbers printed in the MemVP paper (ICML 2024), for reports that show ours beside them."""

from __future__ import annotations

# #Trainable parameters in millions, as printed: Table 1 (BART-base, T5-base; 2 decimals) and
# Table 2 (LLaMA; 1 decimal). Missing pairs are not in the paper.
TRAINABLE_M: dict[str, dict[str, float]] = {
    "bart_base": {
        "full_ft": 141.16,
        "compacter": 3.87,
        "lora": 3.92,
        "vl_adapter": 3.87,
        "vl_pet": 3.84,
        "memvp": 3.78,
    },
    "t5_base": {"full_ft": 224.54, "compacter": 6.11, "lora": 6.05, "vl_adapter": 6.10, "vl_pet": 6.07, "memvp": 6.00},
    "llama_7b": {"memvp": 3.9, "llava_lora": 4.4},
    "llama_13b": {"memvp": 5.5},
}
# Decimals the paper prints per backbone (a count "matches" when it rounds to the printed value).
TRAINABLE_DECIMALS = {"bart_base": 2, "t5_base": 2, "llama_7b": 1, "llama_13b": 1}
# The visual encoder each backbone's rows use: CLIP RN101 grid features (Table 1), CLIP ViT-L/14
# with adapters (Tables 2-3).
PAPER_VISION = {
    "bart_base": "clip_rn101",
    "t5_base": "clip_rn101",
    "llama_7b": "clip_vit_l14",
    "llama_13b": "clip_vit_l14",
}
