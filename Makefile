# Two commands do everything: `make demo` (train + evaluate FCOS on the embedded shapes set) and
# `make test` (the suite CI runs).  Both create or reuse .venv through tools/setup_env.sh.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_DIR ?= work_dirs/fcos_demo
DEMO_CONFIG ?= configs/fcos/fcos_r18_fpn_shapes-128_demo.py
TREES_DIR ?= work_dirs/fcos_neon_trees
TREES_CONFIG ?= configs/fcos/fcos_r18_fpn_neon-trees_demo.py
# OpenMP threads that sleep instead of spinning while they wait: the test suite and every tool
# run robustly beside other work (tools/process_defaults.py; a value in the environment wins).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-core lint test test-slow test-all demo demo-compare demo-trajectory demo-trees \
	bench-deepforest clean-venv

setup:
	bash tools/setup_env.sh

# The lean core only (torch, mmengine, mmext with its ops): the recommenders, no vision stack.
setup-core:
	bash tools/setup_env.sh --core

# OpenMMLab's lint set (setup.cfg, pyproject.toml); CI runs it before the tests.
LINT_PATHS := mmext tools tests configs projects setup.py
lint: setup
	$(VENV)/bin/flake8 $(LINT_PATHS)
	$(VENV)/bin/isort --check-only --diff $(LINT_PATHS)
	$(VENV)/bin/yapf --diff --recursive $(LINT_PATHS)
	$(VENV)/bin/codespell $(LINT_PATHS) docs README.md

# pytest exits 5 when it collects nothing: that is a broken suite, not a pass.
test: setup
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	PYTHON=$(PY) bash tools/run_demo.sh $(DEMO_CONFIG) $(DEMO_DIR)

# The same demo with mmdet's FCOSHead, for the side-by-side table in configs/fcos/README.md.
demo-compare: setup
	PYTHON=$(PY) bash tools/run_demo.sh $(DEMO_CONFIG) $(DEMO_DIR)_mmdet_head \
		--cfg-options model.bbox_head.type=mmdet.FCOSHead

# The ViT digits demo with its embedding trajectory (configs/vit/README.md): trains, then draws
# $(TRAJECTORY_DIR)/trajectory_vis/trajectory.gif and its PNG frames.
TRAJECTORY_DIR ?= work_dirs/vit_trajectory
demo-trajectory: setup
	$(PY) tools/train.py configs/vit/vit-tiny-p8_digits-32_trajectory.py --work-dir $(TRAJECTORY_DIR)
	$(PY) tools/analysis/embedding_trajectory.py $(TRAJECTORY_DIR)

# Real images (issue #20): NEON tree crowns from the deepforest wheel; data check, training on
# tiles, sliding-window evaluation (validation part, two other sites) and a picture of a crop.
demo-trees: setup
	PYTHON=$(PY) bash tools/run_demo_trees.sh $(TREES_CONFIG) $(TREES_DIR)

# DeepForest 2.1.0 side by side (issue #20 item 4): its own venv over our torch, the demo's tiles,
# the demo's training time (981 s measured), scored by mmext's metrics (docs/benchmarks.md).
DF_SECONDS ?= 981
bench-deepforest: setup
	$(PY) tools/benchmark/bench_deepforest.py prepare $(TREES_DIR)_deepforest
	DF_PY=$$(bash tools/benchmark/setup_deepforest_env.sh) && \
		$$DF_PY tools/benchmark/bench_deepforest.py train $(TREES_DIR)_deepforest --seconds $(DF_SECONDS)
	$(PY) tools/benchmark/bench_deepforest.py evaluate $(TREES_DIR)_deepforest

clean-venv:
	rm -rf $(VENV)
