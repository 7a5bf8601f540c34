# Quick start:   make demo    (set up, then pull, benchmark and run the default detector on the sample video)
#                make test    (set up, then run the test suite)
#                make talk    (set up, then time every variant of the talk's models: benchmarks/talk_table.py)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup system demo test talk clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	$(BIN)/python -m pip install --quiet --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
	touch $@

# The Debian packages the tests need (ffmpeg, chromium, mosquitto...), where this user may install
# them (root or password-less sudo); otherwise it names them, and the tests that need them skip.
system:
	tools/system-packages --if-possible

demo: setup
	$(BIN)/edgevision demo -o runs/demo

test: setup system
	$(BIN)/python -m pytest -q

talk: setup
	$(BIN)/python benchmarks/talk_table.py --json runs/talk/table.json

clean:
	rm -rf $(VENV) runs
