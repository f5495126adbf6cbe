# pandagpm top-level make file.
#
#   make demo   - the main job: build what is needed and run the demo.
#   make test   - build everything and run every test (CI runs this).
#
# Both install what is missing first: Debian packages through
# scripts/install-system-deps.sh (apt-get) and Python packages into .venv.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CC_SAN ?= clang-14
GLIB_CFLAGS = $(shell pkg-config --cflags glib-2.0)
GLIB_LIBS = $(shell pkg-config --libs glib-2.0)
CORE_SRCS := $(sort $(wildcard csrc/core/*.c) $(wildcard csrc/arch/*.c))
CTEST_SRCS := $(sort $(wildcard tests/c/test_*.c))
CTEST_BINS := $(patsubst tests/c/%.c,tests/c/build/%,$(CTEST_SRCS))
CWARN := -std=gnu11 -Wall -Wextra -Werror
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all -g -O1
PYTEST_ARGS ?=

.PHONY: all deps venv build guest image ctest ctest-valgrind pytest \
	pytest-asan test panda panda-ci panda-all test-panda test-arch-matrix \
	test-rings-off \
	demo bench fuzz-smoke format format-check clean

all: build

deps:
	@bash scripts/install-system-deps.sh

# The checkout itself is on the venv's path (a .pth file), so examples and
# scripts find pandagpm from any directory once it is built in place.
$(VPY):
	@echo "[venv] creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "setuptools>=61" wheel "pytest>=7"
	$(VPY) -c 'import site, sys; open(site.getsitepackages()[0] + "/pandagpm-checkout.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	@# The FUSE mount (pandagpm mount) is built on pyfuse3 (libfuse3-dev);
	@# its tests skip, saying why, where it cannot be installed.
	$(VPY) -m pip install -q pyfuse3 || \
		echo "[venv] pyfuse3 is not installable here; the mount tests will skip"
	@# pandare's cffi definitions load without libpanda; the PANDA tests
	@# derive struct offsets from them. Optional: those tests skip without.
	$(VPY) -m pip install -q pandare || \
		echo "[venv] pandare is not installable here; PANDA tests will skip"

venv: $(VPY)

# Builds pandagpm._gpm in place with zero warnings allowed.
build: venv
	@echo "[build] pandagpm._gpm"
	GPM_EXTRA_CFLAGS="-Werror" $(VPY) setup.py -q build_ext --inplace

guest:
	@$(MAKE) -C guest

# ARCH=aarch64 or ARCH=arm builds that arch's generic image instead.
image: build
	$(VPY) -m pandagpm.image build $(if $(ARCH),--arch $(ARCH))

# The core (csrc/core, csrc/arch) and the stock-QEMU host (csrc/qemu)
# as one static library per flavour, built once and linked by the C
# tests (san: ASan+UBSan; vg: plain, for valgrind) and the fuzzers (fuzz).
# setup.py builds the same sources into the extension's libgpmcore.
LIB_SRCS := $(CORE_SRCS) $(sort $(wildcard csrc/qemu/*.c))
LIB_HDRS := $(wildcard csrc/include/gpm/*.h) $(wildcard csrc/core/*.h) \
	$(wildcard csrc/arch/*.h) $(wildcard csrc/qemu/*.h)
LIB_INC := -Icsrc/include -Icsrc $(GLIB_CFLAGS)
LIB_san := build/san/libgpmcore.a
LIB_vg := build/vg/libgpmcore.a
LIB_fuzz := build/fuzz/libgpmcore.a

build/san/obj/%.o: %.c $(LIB_HDRS)
	@mkdir -p $(@D)
	$(CC_SAN) $(CWARN) $(SANFLAGS) $(LIB_INC) -c -o $@ $<
build/vg/obj/%.o: %.c $(LIB_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CWARN) -g -O1 $(LIB_INC) -c -o $@ $<
build/fuzz/obj/%.o: %.c $(LIB_HDRS)
	@mkdir -p $(@D)
	$(CC_SAN) $(FUZZ_LIB_CFLAGS) -c -o $@ $<
build/%/libgpmcore.a:
	@rm -f $@
	ar rcs $@ $^
$(LIB_san): $(patsubst %.c,build/san/obj/%.o,$(LIB_SRCS))
$(LIB_vg): $(patsubst %.c,build/vg/obj/%.o,$(LIB_SRCS))
$(LIB_fuzz): $(patsubst %.c,build/fuzz/obj/%.o,$(LIB_SRCS))

# C unit tests of the core, under ASan and UBSan.
tests/c/build/%: tests/c/%.c $(LIB_san) $(LIB_HDRS) $(wildcard tests/c/*.h)
	@mkdir -p $(@D)
	$(CC_SAN) $(CWARN) $(SANFLAGS) $(LIB_INC) \
		-o $@ $< $(LIB_san) $(GLIB_LIBS) -lcmocka -lpthread

ctest: $(CTEST_BINS)
	@set -e; for t in $(CTEST_BINS); do \
		echo "[ctest] $$t"; \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$$t; \
	done

# The same C tests without sanitizers, under valgrind.
ctest-valgrind: $(LIB_vg)
	@mkdir -p tests/c/build/vg
	@set -e; for t in $(CTEST_SRCS); do \
		b=tests/c/build/vg/$$(basename $$t .c); \
		$(CC) $(CWARN) -g -O1 $(LIB_INC) \
			-o $$b $$t $(LIB_vg) $(GLIB_LIBS) -lcmocka -lpthread; \
		echo "[valgrind] $$b"; \
		valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
			--error-exitcode=3 $$b >/dev/null; \
	done

pytest: build
	$(VPY) -m pytest $(PYTEST_ARGS)

# The extension's in-process Python tests against an ASan+UBSan build.
pytest-asan: venv
	@VPY=$(VPY) bash scripts/pytest-asan.sh

test: deps build guest
	@$(MAKE) --no-print-directory ctest
	@$(MAKE) --no-print-directory ctest-valgrind
	@$(MAKE) --no-print-directory -C guest check
	@$(MAKE) --no-print-directory -C guest check-be
	@$(MAKE) --no-print-directory panda-glue-check
	@if [ -f .panda-path ] || [ -n "$$PANDAGPM_REQUIRE_PANDA" ]; then \
		$(MAKE) --no-print-directory panda-plugins-check; \
	else \
		echo "[panda] PANDA not provisioned (make panda): no panda-plugins-check;" \
			"the panda_real tests will skip"; \
	fi
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory pytest-asan
	$(VPY) -m pytest -ra $(PYTEST_ARGS)
	@echo "[test] the guest and loader suites again with the rings off (x86_64)"
	PANDAGPM_RINGS=0 PANDAGPM_TEST_ARCHES=x86_64 $(VPY) -m pytest -ra \
		tests/test_e2e_guest.py tests/test_e2e_loader.py

# Every end-to-end suite on every arch with the shared-memory rings off
# (docs/rings.md): the hypercall path alone.
test-rings-off: build guest
	PANDAGPM_RINGS=0 PANDAGPM_FULL_MATRIX=1 $(VPY) -m pytest -ra \
		$(wildcard tests/test_e2e_*.py)

# Real PANDA, built from source into the per-user cache (seconds when
# cached), with pandagpm's plugins built in its tree and its pypanda
# (pandare) installed into .venv. PANDA_TARGETS is a comma-separated list.
PANDA_SRC ?= $(firstword $(wildcard ../shared/panda/panda-src-*.tar.xz))
PANDA_TARGETS ?= x86_64-softmmu
panda: venv
	@test -n "$(PANDA_SRC)" || { echo "usage: make panda PANDA_SRC=/path/to/panda-src.tar.xz (or a PANDA tree)"; exit 2; }
	@bash scripts/provision-panda.sh --src "$(PANDA_SRC)" --targets "$(PANDA_TARGETS)" --venv $(VENV)

# The PANDA targets CI builds (.ci/run), and every target pandagpm has
# tests for (docs/panda.md, "i386 and MIPS targets"): the rest cost about
# 4 minutes each on 2 cores when cold, so CI leaves them out.
PANDA_CI_TARGETS := x86_64-softmmu,aarch64-softmmu,arm-softmmu,i386-softmmu,mipsel-softmmu
PANDA_ALL_TARGETS := $(PANDA_CI_TARGETS),mips64el-softmmu,mips-softmmu,mips64-softmmu
panda-ci:
	@$(MAKE) --no-print-directory panda PANDA_TARGETS=$(PANDA_CI_TARGETS)
panda-all:
	@$(MAKE) --no-print-directory panda PANDA_TARGETS=$(PANDA_ALL_TARGETS)

# The end-to-end suite under real PANDA (after make panda); it fails
# instead of skipping when PANDA is missing.
test-panda: build guest
	PANDAGPM_REQUIRE_PANDA=1 $(VPY) -m pytest -ra -m panda_real $(PYTEST_ARGS)

# The forwarding acceptance at full size: 16 clients x 64 MiB through one
# forward (minutes; the regular suite runs it at 4 MiB per client).
test-forward-full: build guest
	GPM_FWD_FULL=1 $(VPY) -m pytest -ra tests/test_e2e_forward.py -k concurrent $(PYTEST_ARGS)

# Every end-to-end suite on every arch (CI runs the loader's suite on
# x86_64 only; tests/archs.py).
test-arch-matrix: build guest
	PANDAGPM_FULL_MATRIX=1 PANDAGPM_REQUIRE_ARCHES=1 $(VPY) -m pytest -ra \
		tests/test_e2e_guest.py tests/test_e2e_linjector.py \
		tests/test_e2e_loader.py $(PYTEST_ARGS)

# make demo ARCH=aarch64 (or arm): the same demo on another generic image.
ARCH ?= x86_64
demo: deps build guest
	@if [ "$(ARCH)" != x86_64 ]; then $(MAKE) --no-print-directory -C guest GUEST_ARCH=$(ARCH); fi
	$(VPY) examples/demo.py --arch $(ARCH)

# Every figure per arch: x86_64 runs every script; the other arches the
# hypercall round trip, bulk rate, load-to-first-message and the rings.
BENCH_ARCHES ?= x86_64 aarch64 arm i386 mipsel mips64el
BENCH_ARCH_SCRIPTS ?= bench/bench_hypercall.py bench/bench_bulk.py \
	bench/bench_load.py bench/bench_ring.py
bench: deps build guest
	@set -e; for a in $(BENCH_ARCHES); do \
		if [ "$$a" = x86_64 ]; then scripts="$$(ls bench/bench_*.py)"; \
		else scripts="$(BENCH_ARCH_SCRIPTS)"; fi; \
		for b in $$scripts; do echo "[bench] $$b ($$a)"; \
			GPM_BENCH_ARCH=$$a $(VPY) $$b; done; \
	done

include mk/panda.mk

format:
	git ls-files 'csrc/*.c' 'csrc/*.h' 'guest/*.c' 'guest/*.h' \
		'tests/c/*.c' 'tests/c/*.h' 'fuzz/*.c' | xargs -r clang-format-14 -i

format-check:
	@echo "[format] clang-format-14 --dry-run"
	@git ls-files 'csrc/*.c' 'csrc/*.h' 'guest/*.c' 'guest/*.h' \
		'tests/c/*.c' 'tests/c/*.h' 'fuzz/*.c' | \
		xargs -r clang-format-14 --dry-run --Werror

clean:
	rm -rf build tests/c/build fuzz/build pandagpm/*.so
	-@$(MAKE) -C guest clean

# Fuzzing with libFuzzer (clang-14), ASan and UBSan. fuzz-smoke runs each
# target for FUZZ_SECONDS on a copy of its seed corpus and fails on any
# crash; the executions are printed.
FUZZ_SECONDS ?= 45
FUZZ_LIB_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
	$(LIB_INC)
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined $(LIB_INC)

fuzz/build/fuzz_%: fuzz/fuzz_%.c $(LIB_fuzz) tests/c/fake_cpu.h
	@mkdir -p $(@D)
	$(CC_SAN) $(FUZZ_CFLAGS) -o $@ $< $(LIB_fuzz) $(GLIB_LIBS) -lpthread

fuzz-smoke: deps fuzz/build/fuzz_hypercall fuzz/build/fuzz_rsp \
		fuzz/build/fuzz_ring
	@bash scripts/fuzz-smoke.sh $(FUZZ_SECONDS) hypercall rsp ring
