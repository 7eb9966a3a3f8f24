# Two entry points for a fresh machine (each creates its own virtual environment in .venv):
#   make run    install, then run the whole chain (data -> validate -> train -> evaluate -> profile -> register)
#               with `dvc repro` on the embedded default (SQLite MLflow, local DVC cache, offline data, CPU)
#   make test   install with the test extras, then run the whole test suite
# torch==2.13.0 resolves to the CPU wheel on machines that carry it (as here) and to PyPI's CUDA build elsewhere;
# on another CPU-only machine: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make run

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(BIN)):$(PATH)
# a quiet install: errors only (-qq), no "new pip available" notice, no "scripts not on PATH" warnings
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1 $(BIN)/pip
PIP_QUIET ?= -qq

.PHONY: install run test bench lint clean-artifacts image lock plots-template

$(STAMP): pyproject.toml
	@echo "installing the project and its test extras into $(VENV) (a few minutes on a fresh machine)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install $(PIP_QUIET) --upgrade pip
	@$(PIP) install $(PIP_QUIET) -e '.[test]'
	@touch $(STAMP)
	@echo "installed into $(VENV) ($$($(BIN)/python -c 'import torch; print("torch", torch.__version__)'))"

install: $(STAMP)

run: $(STAMP)
	$(BIN)/mslstm data --raw-only   # data/ per data.dvc: dvc pull from a remote, else rebuild offline + verify hash
	$(BIN)/dvc repro
	@$(BIN)/mslstm summary   # test figures vs baselines, champion, pictures, the mlflow ui command

test: $(STAMP)
	@bash .ci/system-deps   # buildah/mmdebstrap/podman, chromium, postgresql when missing (apt, as root)
	@# some tests make throw-away git repos (dvc repro in a temporary copy): an identity without touching git config
	GIT_AUTHOR_NAME=$${GIT_AUTHOR_NAME:-ci} GIT_AUTHOR_EMAIL=$${GIT_AUTHOR_EMAIL:-ci@localhost} \
	GIT_COMMITTER_NAME=$${GIT_COMMITTER_NAME:-ci} GIT_COMMITTER_EMAIL=$${GIT_COMMITTER_EMAIL:-ci@localhost} \
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_data.py
	$(BIN)/python bench/bench_train.py

# The project image without a Docker daemon (buildah); tag = pipeline.image (the project version).
#   make image                                  the CUDA default base
#   make image IMAGE_ARGS="--base debian --host-wheels"    local Debian base, this machine's CPU torch wheel
IMAGE_ARGS ?=
image: $(STAMP)
	$(BIN)/mslstm image build $(IMAGE_ARGS)

# dvc.lock of the embedded default and the metrics/plots files it records (kept in git: the baseline a fresh
# clone compares with); run after changing dvc.yaml or params.yaml, then commit what it lists.
lock: $(STAMP)
	$(BIN)/mslstm data --raw-only
	$(BIN)/dvc repro
	@echo "commit: git add dvc.lock artifacts/train/metrics.json artifacts/train/history.csv artifacts/eval/metrics.json artifacts/eval/per_frame.csv artifacts/profile/metrics.json"

# plots/template.html: the DVC plots page with Vega, Vega-Lite and Vega-Embed inline (from the npm registry)
plots-template:
	cd $$(mktemp -d) && npm pack --silent vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0 >/dev/null && \
	  $(PYTHON) $(CURDIR)/plots/build_template.py $$PWD/vega-5.33.1.tgz $$PWD/vega-lite-5.23.0.tgz $$PWD/vega-embed-6.29.0.tgz

clean-artifacts:
	rm -rf artifacts
