# sambench build. Public targets install missing Debian packages first
# (`deps`), then re-enter make so pkg-config sees them.
#
#   make            build build/bin/sambench
#   make test       fixtures check, layout check, unit + parity tests, valgrind on small tests,
#                   and the real one-node Slurm test (slurm-wlm + munge installed when missing)
#   make sanitize   the test suite under ASan + UBSan (build-asan/)
#   make test-torch checkpoint and bank formats against PyTorch itself (installs python3-torch)
#   make bench      benchmark tables (bench/run.sh)
#   make demo       the main job on built-in demo data
#   make fuzz       libFuzzer targets for the file readers, FUZZ_SECONDS each
#   make clean
#
# Knobs: V=1 (show commands), BUILD=dir, OPT=-O2, ARCH=-march=x86-64-v3, WERROR=-Werror, CC=gcc.

SHELL := /bin/bash
V ?= 0
Q := $(if $(filter 1,$(V)),,@)
BUILD ?= build
CC := gcc
OPT ?= -O2
ARCH ?= -march=x86-64-v3
WERROR ?= -Werror
SAN ?=
FUZZ_SECONDS ?= 20

PKGS := ompi-c openblas hdf5-serial libzip cmocka libpng zlib yaml-0.1
DEB_PKGS := gcc make pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev hdf5-tools \
            libzip-dev libcmocka-dev libpng-dev zlib1g-dev libyaml-dev valgrind
DEB_CMDS := gcc pkg-config mpirun h5dump valgrind

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -lhdf5_hl -lpthread -lm

CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) -g $(ARCH) -ffp-contract=fast -fno-math-errno \
             -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-format-truncation $(WERROR) $(SAN) -MMD -MP $(PKG_CFLAGS)
LDFLAGS_ALL = $(SAN)

CORE_SRC := $(sort $(wildcard core/*.c))
PIPE_SRC := $(sort $(filter-out pipeline/main.c,$(wildcard pipeline/*.c pipeline/*/*.c)))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_UTIL := $(sort $(wildcard tests/util_*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
PIPE_OBJ := $(PIPE_SRC:%.c=$(BUILD)/obj/%.o)
TEST_UTIL_OBJ := $(TEST_UTIL:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
CORE_LIB := $(BUILD)/lib/libsambench_core.a
PIPE_LIB := $(BUILD)/lib/libsambench_pipeline.a
BIN := $(BUILD)/bin/sambench

.PHONY: all deps test test-torch sanitize bench demo fuzz clean _all _test _bench _demo _fuzz check-layout check-fixtures test-slurm _test-slurm

# ---- public targets -------------------------------------------------------
all: deps
	@$(MAKE) --no-print-directory _all

test: deps
	@$(MAKE) --no-print-directory SAMBENCH_TEST_SLURM=1 _test

sanitize: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  VALGRIND_TESTS= _test

bench: deps
	@$(MAKE) --no-print-directory _bench

# Format checks against PyTorch itself (installs Debian's python3-torch).
test-torch: deps
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null)
	@$(MAKE) --no-print-directory _all
	@bash tests/torch_interop.sh $(BIN)

demo: deps
	@$(MAKE) --no-print-directory _demo

# A real one-node Slurm (slurm-wlm + munge, installed when missing) running slurm/ job scripts.
test-slurm: deps
	@$(MAKE) --no-print-directory _test-slurm

fuzz: deps
	@command -v clang >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null)
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang WERROR= ARCH= OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" _fuzz

clean:
	rm -rf build build-asan build-fuzz

# Installs what is missing, quietly does nothing when all is present.
deps:
	@missing=""; \
	for c in $(DEB_CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if command -v pkg-config >/dev/null 2>&1; then \
	  for p in $(PKGS); do pkg-config --exists $$p || missing="$$missing $$p"; done; fi; \
	if [ -n "$$missing" ]; then \
	  echo "deps: missing$$missing; installing Debian packages with apt-get"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(DEB_PKGS) >/dev/null || \
	  { echo "deps: apt-get failed"; exit 1; }; \
	fi

# ---- internal targets (dependencies present) ------------------------------
_all: $(BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  CC    $<')
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(PIPE_LIB): $(PIPE_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BIN): $(BUILD)/obj/pipeline/main.o $(PIPE_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LD    $@')
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_UTIL_OBJ) $(PIPE_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LD    $@')
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(PIPE_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LD    $@')
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

# core/ is a library: no MPI, no exit().
check-layout:
	@bad=$$(grep -nE '#[[:space:]]*include[[:space:]]*[<"]mpi\.h|(^|[^_a-zA-Z])(exit|_Exit|abort)[[:space:]]*\(' core/*.c core/*.h | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)' || true); \
	if [ -n "$$bad" ]; then echo "check-layout: core/ must not use MPI or exit:"; echo "$$bad"; exit 1; fi; \
	for d in core pipeline bench configs slurm tests; do [ -d $$d ] || { echo "check-layout: missing $$d/"; exit 1; }; done

check-fixtures:
	@cd tests/fixtures && sha256sum --quiet -c SHA256SUMS || { echo "check-fixtures: tests/fixtures differ from SHA256SUMS"; exit 1; }

VALGRIND_TESTS ?= test_core_base test_ops_linear test_cli test_stats test_manifest test_png test_nifti test_weights_bad

_test: check-layout check-fixtures $(BIN) $(TEST_BIN)
	@SAMBENCH_BIN=$(BIN) VALGRIND_TESTS="$(VALGRIND_TESTS)" SAMBENCH_TEST_SLURM=$(SAMBENCH_TEST_SLURM) \
	  bash tests/run.sh $(BUILD)

_bench: $(BIN) $(BENCH_BIN)
	@bash bench/run.sh $(BUILD)

_demo: $(BIN)
	@bash pipeline/demo.sh $(BIN)

_test-slurm: $(BIN) $(BUILD)/tests/test_run
	@bash tests/slurm/test_slurm.sh $(BUILD)

FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(PIPE_LIB) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

_fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
	  seeds=tests/fuzz/corpus/$$n; [ -d $$seeds ] || seeds=; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 $(BUILD)/corpus/$$n $$seeds 2>&1 | tail -n 3 || exit 1; done

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
