# Two commands do all the set-up on a fresh machine:
#   make demo   install edgegov in .venv and run the main job (edgegov demo)
#   make test   install everything the tests need and run the whole suite
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps microbit-hex lint clean

# The micro:bit v1 firmware with the minimal governor frozen into flash (MicroPython 1.9.2
# from Debian's source package; firmware/microbit/hexbuild). Rebuilt when its inputs change.
HEX := build/microbit/edgegov-frozen.hex
HEX_INPUTS := $(addprefix firmware/microbit/,egr.py egg.py egmain.py \
	hexbuild/build-hex.sh hexbuild/freeze_mpy.py hexbuild/frozen-mpy.patch)

# The report's decode pass is compiled from its Python source (setup.py): reinstall when
# one of those sources changes (until then they run as source, see runtime/edgegov/_accel.py).
ACCEL_SOURCES := $(addprefix runtime/,$(addsuffix .py,$(subst .,/,$(shell sed -n \
	's/^    "\(edgegov\.[a-z_.]*\)",$$/\1/p' runtime/edgegov/_accel.py))))

$(STAMP): pyproject.toml setup.py runtime/edgegov/_recenc.c runtime/edgegov/_accel.py $(ACCEL_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The incident report's plotly.js: the basic bundle from the npm registry (inlined in the
# page; ~1.2 MB instead of the full 4.7 MB). Version pinned with runtime/edgegov/report/plotlyjs.py.
PLOTLY_BASIC := build/js/node_modules/plotly.js-basic-dist-min/plotly-basic.min.js
$(PLOTLY_BASIC):
	command -v npm >/dev/null 2>&1 || bash tools/setup-system.sh
	mkdir -p build/js
	npm install --prefix build/js --no-audit --no-fund --no-save plotly.js-basic-dist-min@4.1.1

install: $(STAMP) $(PLOTLY_BASIC)

demo: $(STAMP) $(PLOTLY_BASIC)
	$(VENV)/bin/edgegov demo

system-deps:
	bash tools/setup-system.sh

$(HEX): $(HEX_INPUTS) tools/setup-deb-src.sh
	WORK=$(CURDIR)/build/microbit/work bash firmware/microbit/hexbuild/build-hex.sh $(HEX)

microbit-hex: $(HEX)

test: $(STAMP) $(PLOTLY_BASIC) system-deps $(HEX)
	$(VENV)/bin/ruff check runtime tools tests
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime tools tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
