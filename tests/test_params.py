"""``python -m memvp_lab.params`` reproduces every #Trainable cell of the paper's Tables 1-2."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # integration tier: every paper model built

# Exact counts of the reference arithmetic (../reference: param_counts.py) for the paper's rows.
PAPER_EXACT = {
    "bart_base": {
        "full_ft": 141_156_864,
        "compacter": 3_870_240,
        "lora": 3_920_640,
        "vl_adapter": 3_868_320,
        "vl_pet": 3_839_136,
        "memvp": 3_784_704,
    },
    "t5_base": {
        "full_ft": 224_540_160,
        "compacter": 6_105_408,
        "lora": 6_052_608,
        "vl_adapter": 6_101_568,
        "vl_pet": 6_073_152,
        "memvp": 5_996_544,
    },
    "llama_7b": {"memvp": 3_870_848, "llava_lora": 4_395_136},
    "llama_13b": {"memvp": 5_477_504},
}


def test_parameter_table_reproduces_every_paper_cell(capsys):
    from memvp_lab.params import main, matches
    from memvp_lab.results.paper_numbers import trainable_m

    assert main(["--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    printed = trainable_m()
    assert sum(len(row) for row in printed.values()) == 15  # Table 1: 2 x 6, Table 2: 3
    for backbone, row in printed.items():
        for method, paper in row.items():
            assert counts[backbone][method] == PAPER_EXACT[backbone][method], (backbone, method)
            assert matches(backbone, method, counts[backbone][method]), (backbone, method, paper)
