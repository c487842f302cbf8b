# Two commands do everything on a fresh machine:
#   make demo   set up (if needed) and run the main job on the bundled sample
#   make test   set up (if needed) and run the test suite
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test colcon colcon-test clean

setup:
	@VENV=$(VENV) bash scripts/setup.sh

demo: setup
	@VENV=$(VENV) bash scripts/demo.sh

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

colcon: setup
	@VENV=$(VENV) bash scripts/colcon_build.sh

# colcon build && colcon test in a workspace: CTest runs the tests that need the install tree
# (ITERPRIME_FULL_SUITE=1 make colcon-test runs the whole suite there)
colcon-test: setup
	@VENV=$(VENV) bash scripts/colcon_test.sh

clean:
	rm -rf $(VENV) build install log out
