# Developer shortcuts; each target needs the venv the README's test command creates (.venv).
SECONDS ?= 60

.PHONY: build test sanitize fuzz valgrind bench lint format

build:            ## rebuild the C extension in place (needs the onednn-devel wheel in .venv)
	.venv/bin/python setup.py build_ext --inplace

test: build       ## the whole test suite against the in-place build
	PYTHONPATH=. .venv/bin/python -m pytest tests -q

sanitize:         ## the test suite under AddressSanitizer + UndefinedBehaviorSanitizer
	bash tools/sanitize.sh

fuzz:             ## every fuzz target for $(SECONDS) s each (atheris)
	bash tools/fuzz.sh $(SECONDS)

valgrind:         ## a short workload under valgrind --leak-check=full
	bash tools/valgrind.sh

bench:            ## every benchmark into benchmarks/results.md
	.venv/bin/python benchmarks/run_all.py

lint:             ## style checks as CI runs them (clang-format, ruff)
	bash tools/lint.sh

format:           ## rewrite C and Python files in the project style
	bash tools/lint.sh --fix
