# Set-up and developer commands (README). The wheel is built without build
# isolation: it compiles against the torch already installed (torch is a 5 GB
# download otherwise).
PYTHON ?= python3
export CUDA_HOME ?= /usr/local/cuda
export MAX_JOBS ?= 2

SOURCES := setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/kernels/*.cu csrc/kernels/*.h csrc/kernels/common/*) \
           $(wildcard convt3d_ops/*.py)

.PHONY: deps wheel install test bench clean
deps:  ## build and test requirements (torch 2.14.1 comes from the local wheel store on our machines)
	$(PYTHON) -m pip install -q "torch==2.14.1" "setuptools>=77" wheel build ninja pytest hypothesis
dist/.built: $(SOURCES)
	rm -rf dist
	$(PYTHON) -m build --wheel --no-isolation -o dist .
	touch $@
wheel: dist/.built
install: deps wheel
	$(PYTHON) -m pip install -q --no-deps --force-reinstall dist/convt3d_ops-*.whl
# Python runs outside the repository root: from there `import convt3d_ops` would find the
# source tree (no compiled _C) before the installed wheel.
test: install  ## the test command
	cd tests && $(PYTHON) -m pytest -q .
bench: install  ## the main job: benchmark on a GPU, CPU demo without one
	mkdir -p bench_out && cd bench_out && $(PYTHON) -m convt3d_ops.bench --json bench.json
clean:
	rm -rf build dist *.egg-info bench_out
