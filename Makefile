# cc-proxy: two FastCGI responders (ccproxy-claude, ccproxy-codex) on a shared core.
#
#   make            build into build/ (build/san with SANITIZE=1)
#   make test       unit suites, fuzz replay, integration; "N passed, N failed"
#   make run        nginx + responders in the foreground, from this checkout
#   make deps       install missing Debian packages (as root) or name them
#   make fuzz       the libFuzzer targets (tests/fuzz/), FUZZ_SECONDS each
#   make soak       ASan/UBSan responders under nginx and lighttpd, SOAK_SECONDS of
#                   mixed load with every fault, then the checks (tests/soak/)
#
# Missing packages are installed by the build itself when run as root.

CC        ?= cc
SANITIZE  ?=
BUILD     ?= build$(if $(SANITIZE),/san,)
PKGS      := fcgi libcurl json-c openssl
# Recursive (=), not :=: pkg-config runs when a recipe expands these, which is
# after deps-quiet (a prerequisite of every compile and link) has installed
# what was missing; evaluated at parse time they would be empty on the first run.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
CMOCKA_CFLAGS = $(shell pkg-config --cflags cmocka)
CMOCKA_LIBS   = $(shell pkg-config --libs cmocka)

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wno-missing-field-initializers -pthread $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread -lm
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
# make fuzz: the core built with clang for libFuzzer, ASan and UBSan.
ifneq ($(FUZZ),)
CC       := clang
CFLAGS   += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

COMMON_SRC := $(wildcard common/*.c)
EMBEDDED   := adapters_json codex_instructions codex_tools
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(EMBEDDED:%=$(BUILD)/gen/%.o)
PROGRAMS   := $(BUILD)/bin/ccproxy-claude $(BUILD)/bin/ccproxy-codex
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# The fuzz targets built with the normal compiler and tests/fuzz/replay.c:
# make test runs each over its corpus and regression inputs, no libFuzzer.
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN := $(FUZZ_TARGETS:%=$(BUILD)/fuzz-replay/%)

.PHONY: all deps deps-quiet test unit integration run bench e2e fuzz soak install uninstall clean
# Keep object files make considers intermediate: no rebuild churn.
.SECONDARY:
PREFIX    ?= /usr/local
all: deps-quiet $(PROGRAMS)

# ---- dependencies -----------------------------------------------------------
DEB_PACKAGES := pkg-config libfcgi-dev libcurl4-openssl-dev libjson-c-dev libssl-dev libcmocka-dev \
                nginx-light lighttpd spawn-fcgi curl openssl python3 prometheus
deps:
	@scripts/deps.sh $(DEB_PACKAGES)
deps-quiet:
	@scripts/deps.sh --quiet $(DEB_PACKAGES)

# ---- build --------------------------------------------------------------------
$(BUILD)/%.o: %.c $(wildcard common/*.h) | deps-quiet
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Built-in data (the adapter table, the Codex defaults) compiled in as C
# strings, so the binaries need no data file at run time.
$(BUILD)/gen/adapters_json.c: conf/adapters.json scripts/embed.sh | deps-quiet
	@mkdir -p $(dir $@)
	scripts/embed.sh ccp_builtin_adapters_json $< > $@
$(BUILD)/gen/codex_instructions.c: conf/codex_instructions.md scripts/embed.sh | deps-quiet
	@mkdir -p $(dir $@)
	scripts/embed.sh ccp_builtin_codex_instructions $< > $@
$(BUILD)/gen/codex_tools.c: conf/codex_tools.json scripts/embed.sh | deps-quiet
	@mkdir -p $(dir $@)
	scripts/embed.sh ccp_builtin_codex_tools $< > $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c | deps-quiet
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libccproxy.a: $(COMMON_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/bin/ccproxy-%: $(BUILD)/fcgi/ccproxy_%.o $(BUILD)/libccproxy.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# CCP_README_PATH: test_config checks README.md's Configuration table against
# config.c's variable table, reading the file at test time.
$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libccproxy.a | deps-quiet
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CMOCKA_CFLAGS) -DCCP_README_PATH='"$(abspath README.md)"' $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libccproxy.a $(LDLIBS) $(CMOCKA_LIBS)

$(BUILD)/fuzz-replay/%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(BUILD)/libccproxy.a | deps-quiet
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/libccproxy.a $(LDLIBS)

# ---- test ---------------------------------------------------------------------
test: all $(UNIT_BIN) $(REPLAY_BIN)
	@CCPROXY_BIN_DIR=$(abspath $(BUILD))/bin CCPROXY_UNIT_DIR=$(abspath $(BUILD))/tests \
	    CCPROXY_REPLAY_DIR=$(abspath $(BUILD))/fuzz-replay \
	    SANITIZE=$(SANITIZE) scripts/run-tests.sh $(TESTS)

unit: all $(UNIT_BIN) $(REPLAY_BIN)
	@CCPROXY_UNIT_DIR=$(abspath $(BUILD))/tests CCPROXY_REPLAY_DIR=$(abspath $(BUILD))/fuzz-replay \
	    scripts/run-tests.sh --unit-only

# ---- run ------------------------------------------------------------------------
# exec: make's child is run.sh itself, so the SIGTERM make passes on reaches
# it (a /bin/sh in between would die of it and leave the stack running).
run: all
	@CCPROXY_BIN_DIR=$(abspath $(BUILD))/bin exec scripts/run.sh

# ---- fuzz -----------------------------------------------------------------------
# make fuzz FUZZ_SECONDS=N: every tests/fuzz/fuzz_*.c target for N seconds
# (default 60) on its corpus; a crash stops it with the input saved (and
# fails make; the whole log in build/fuzz/<target>.log). A
# dictionary of protocol tokens, tests/fuzz/<target>.dict, is passed when
# there is one. FUZZ_TARGETS="sse config" runs only those.
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/deps.sh --quiet clang libclang-rt-dev $(DEB_PACKAGES)
	@$(MAKE) --no-print-directory FUZZ=1 BUILD=build/fuzz $(FUZZ_TARGETS:%=build/fuzz/fuzz/%)
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p tests/fuzz/corpus/$$t build/fuzz/corpus/$$t build/fuzz/crashes; \
	    echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
	    dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	    build/fuzz/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict \
	        -artifact_prefix=build/fuzz/crashes/$$t- build/fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	        > build/fuzz/$$t.log 2>&1; rc=$$?; \
	    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==.*ERROR|SUMMARY)|cov:" \
	        build/fuzz/$$t.log | tail -4; \
	    [ $$rc = 0 ] || { echo "fuzz $$t: failed (exit $$rc), log in build/fuzz/$$t.log"; exit 1; }; \
	done

build/fuzz/fuzz/%: tests/fuzz/fuzz_%.c build/fuzz/libccproxy.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< build/fuzz/libccproxy.a $(LDLIBS)

# make soak SOAK_SECONDS=N: the responders built with SANITIZE=1 (build/san),
# then tests/soak/soak.py for N seconds of load (default 600) and its checks;
# SOAK_ARGS="--clients 32 --seed 7" passes more. make test runs a short soak
# (SOAK_TEST_SECONDS, default 20) of the build under test.
SOAK_SECONDS ?= 600
soak:
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@CCPROXY_BIN_DIR=$(abspath build/san)/bin exec python3 tests/soak/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

# Budgets are measured, never asserted by a timed test. The stack beside
# nginx proxy_pass, one table; e.g. make bench BENCH_ARGS="--streams 1000 --duration 5".
# exec: a signal make passes on reaches the bench, which stops what it started.
bench: all $(BUILD)/bench/rss_floor
	@CCPROXY_BIN_DIR=$(abspath $(BUILD))/bin CCPROXY_RSS_FLOOR=$(abspath $(BUILD))/bench/rss_floor \
	    exec python3 tests/bench/bench.py $(BENCH_ARGS)

# What the libraries alone keep resident, for the bench's idle RSS row.
$(BUILD)/bench/rss_floor: tests/bench/rss_floor.c | deps-quiet
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

# The real clients (Claude Code, Codex CLI, both SDKs; npm) through the stack.
e2e: all
	@CCPROXY_BIN_DIR=$(abspath $(BUILD))/bin bash tests/e2e/real_clients.sh

# make install PREFIX=/usr/local DESTDIR=...: binaries, man pages (section 8),
# the adapter table and example nginx, lighttpd and systemd configurations.
install: all
	@PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) scripts/install.sh install $(abspath $(BUILD))/bin
uninstall:
	@PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) scripts/install.sh uninstall $(abspath $(BUILD))/bin

clean:
	rm -rf build
