# ksa.c - GNU make. `make` builds bin/ksa (float32) and bin/ksa64 (float64, gradient checks);
# `make test` runs every test; `make asan` runs them under AddressSanitizer + UBSan;
# `make demo` trains the demo. Every target first installs missing Debian packages
# (scripts/install_deps.sh) and then re-runs make, because pkg-config must not be evaluated
# before the packages exist (ENVIRONMENT.md, traps).

SHELL := /bin/bash
export DEPS_READY

ifneq ($(DEPS_READY),1)
DEPS_READY := $(shell scripts/install_deps.sh --check >/dev/null 2>&1 && echo 1)
endif

ifneq ($(DEPS_READY),1)
# ---- dependencies missing: install them once, then run the requested goals -----------
GOALS := $(or $(MAKECMDGOALS),all)
.PHONY: $(GOALS)
$(firstword $(GOALS)):
	scripts/install_deps.sh
	$(MAKE) DEPS_READY=1 $(GOALS)
$(filter-out $(firstword $(GOALS)),$(GOALS)):
	@:
else
include mk/build.mk
endif
