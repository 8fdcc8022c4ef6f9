# vmabackup — plain Makefile.
#
#   make                 build vma (and vmad once it exists) into $(BUILDDIR)
#   make check           install missing packages, build, run every test
#   make check-asan      the same tests in an AddressSanitizer + UBSan build (build-asan/)
#   make demo            install missing packages, build, run the demo
#   make install         PREFIX=/usr/local DESTDIR= honoured
#   make bench           run the benchmarks in bench/ (slow; not part of check)
#   make bench-vma       only the vma create/extract/verify benchmark (bench/vma-bench.sh)
#   make docs            regenerate docs/qmp-reference.md from qapi-schema.json
#   make fuzz            build the libFuzzer harnesses (clang, build-fuzz/) and run each for
#                        FUZZ_SECONDS (default 60) on a copy of its seed corpus; FUZZ="reader
#                        nbd" selects harnesses, FUZZ_JOBS=2 runs two at once
#   make fuzz-regress    run every harness once over its seeds and crash reproducers
#   make fuzz-afl        the same harnesses built with AFL++ (build-afl/); fuzz-afl-run runs
#                        afl-fuzz on each for FUZZ_SECONDS; docs/fuzzing.md
#
# Source sets are found by wildcard so that a new file in a directory needs no edit here:
#   libvma (archive library):  vma-*.c util/*.c
#   vma (CLI):                 vma.c cli/*.c (+ libvmad for vma serve)
#   vmad (daemon):             vmad.c blockdev.c backup*.c block/*.c nbd/*.c monitor/*.c
#   vma-web (web console):     web/*.c (QMP through util/qmp-client.c), web/static/* embedded (libsoup 3)
#   unit tests:                tests/unit/test-*.c, each its own cmocka program

BUILDDIR ?= build
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
CC ?= cc
PKG_CONFIG ?= pkg-config

LIB_PKGS := glib-2.0 uuid zlib libzstd lzo2
DAEMON_PKGS := $(LIB_PKGS) json-glib-1.0 gio-unix-2.0
TEST_PKGS := cmocka
WEB_PKGS := libsoup-3.0 json-glib-1.0 gio-unix-2.0 glib-2.0

pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkg_libs = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

WARN := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
        -Wformat=2 -Wshadow=local -Wpointer-arith -Wvla -Wstrict-prototypes
# CI builds with -Werror; so can anyone: make WERROR=1
ifeq ($(CI),true)
WERROR ?= 1
endif
# clang (the fuzz build) has no -Wshadow=local; its -Wshadow is the nearest
ifneq ($(findstring clang,$(CC)),)
WARN := $(patsubst -Wshadow=local,-Wshadow,$(WARN))
endif
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT ?= -O2 -g
ifneq ($(SANITIZE),)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=undefined
LDSAN := -fsanitize=$(SANITIZE)
endif

CPPFLAGS += -Iinclude -I. -D_GNU_SOURCE -DG_LOG_DOMAIN=\"vmabackup\"
ALL_CFLAGS = -std=c11 $(OPT) $(WARN) -pthread -MMD -MP $(call pkg_cflags,$(DAEMON_PKGS) $(TEST_PKGS) libnbd) $(CFLAGS)
LIB_LDLIBS = $(call pkg_libs,$(LIB_PKGS)) -lbz2 -pthread
# librbd and librados (block/rbd.c): Debian 12 ships no pkg-config files for them
RBD_LDLIBS = $(or $(call pkg_libs,librbd),-lrbd -lrados)
DAEMON_LDLIBS = $(call pkg_libs,$(DAEMON_PKGS) libnbd) $(RBD_LDLIBS) -lbz2 -pthread
ALL_LDFLAGS = $(LDSAN) $(LDFLAGS)

LIB_SRCS := $(sort $(wildcard vma-*.c util/*.c))
CLI_SRCS := $(sort vma.c $(wildcard cli/*.c))
DAEMON_SRCS := $(sort $(wildcard blockdev.c backup*.c block/*.c nbd/*.c monitor/*.c))
VMAD_MAIN := $(wildcard vmad.c)
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz-*.c))
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))

obj = $(patsubst %.c,$(BUILDDIR)/obj/%.o,$(1))
LIB_OBJS := $(call obj,$(LIB_SRCS))
CLI_OBJS := $(call obj,$(CLI_SRCS))
DAEMON_OBJS := $(call obj,$(DAEMON_SRCS))
# qapi-schema.json is embedded into the daemon as the C array qapi_schema_json[]
SCHEMA_JSON := $(wildcard qapi-schema.json)
ifneq ($(SCHEMA_JSON),)
DAEMON_OBJS += $(BUILDDIR)/obj/gen/qapi-schema-data.o
endif
LIBVMA := $(BUILDDIR)/libvma.a
LIBVMAD := $(BUILDDIR)/libvmad.a
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILDDIR)/tests/unit/%,$(UNIT_SRCS))
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILDDIR)/tests/tools/%,$(TOOL_SRCS))

PROGRAMS := $(BUILDDIR)/vma
ifneq ($(VMAD_MAIN),)
PROGRAMS += $(BUILDDIR)/vmad
endif

# vma-web: built when libsoup 3 is there (scripts/install-deps.sh installs it); its page
# (web/static/*) is embedded as the C table web_static_files[] by web/embed.sh.
WEB_SRCS := $(sort $(wildcard web/*.c))
WEB_STATIC := $(sort $(wildcard web/static/*))
WEB_OBJS := $(call obj,$(WEB_SRCS)) $(BUILDDIR)/obj/gen/web-static.o
# the pieces the unit tests link (no libsoup in them)
WEB_LIB_OBJS := $(call obj,web/names.c web/retention.c)
HAVE_SOUP := $(shell $(PKG_CONFIG) --exists libsoup-3.0 2>/dev/null && echo yes)
ifeq ($(HAVE_SOUP),yes)
ifneq ($(WEB_SRCS),)
PROGRAMS += $(BUILDDIR)/vma-web
endif
endif
$(BUILDDIR)/obj/web/%.o: ALL_CFLAGS += $(call pkg_cflags,$(WEB_PKGS))

.SECONDARY:
.PHONY: all deps check check-only check-asan demo install uninstall bench bench-vma clean fuzz docs \
        fuzz-build fuzz-bins fuzz-regress fuzz-afl fuzz-afl-run
all: $(PROGRAMS)

deps:
	@scripts/install-deps.sh

$(BUILDDIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILDDIR)/gen/qapi-schema-data.c: qapi-schema.json
	@mkdir -p $(dir $@)
	{ echo '/* generated from qapi-schema.json by the Makefile: do not edit */'; \
	  echo 'const char qapi_schema_json[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00 };'; } >$@.tmp && mv $@.tmp $@

$(BUILDDIR)/gen/web-static.c: web/embed.sh $(WEB_STATIC)
	@mkdir -p $(dir $@)
	sh web/embed.sh $(WEB_STATIC) >$@.tmp && mv $@.tmp $@

$(BUILDDIR)/obj/gen/%.o: $(BUILDDIR)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

# Generated documentation, committed; a test checks that it is up to date.
docs: docs/qmp-reference.md
docs/qmp-reference.md: qapi-schema.json scripts/qapi-doc.py
	python3 scripts/qapi-doc.py $< >$@.tmp && mv $@.tmp $@

$(LIBVMA): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBVMAD): $(DAEMON_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# vma serve runs vmad's block layer and NBD server: the CLI links the daemon's library;
# vma create / extract -r drive qemu-nbd through libnbd
$(BUILDDIR)/vma: $(CLI_OBJS) $(LIBVMAD) $(LIBVMA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DAEMON_LDLIBS) $(call pkg_libs,libnbd)

$(BUILDDIR)/vmad: $(call obj,$(VMAD_MAIN)) $(LIBVMAD) $(LIBVMA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DAEMON_LDLIBS)

$(BUILDDIR)/vma-web: $(WEB_OBJS) $(LIBVMA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(WEB_PKGS)) $(LIB_LDLIBS)

# unit tests of vma-web's pure pieces (names, retention)
$(BUILDDIR)/tests/unit/test-web-%: $(BUILDDIR)/obj/tests/unit/test-web-%.o $(WEB_LIB_OBJS) $(LIBVMAD) $(LIBVMA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DAEMON_LDLIBS) $(call pkg_libs,$(TEST_PKGS))

$(BUILDDIR)/tests/unit/%: $(BUILDDIR)/obj/tests/unit/%.o $(LIBVMAD) $(LIBVMA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DAEMON_LDLIBS) $(call pkg_libs,$(TEST_PKGS))

$(BUILDDIR)/tests/tools/%: $(BUILDDIR)/obj/tests/tools/%.o $(LIBVMAD) $(LIBVMA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DAEMON_LDLIBS) $(call pkg_libs,libnbd)

# Everything the tests need, built.
test-build: $(PROGRAMS) $(UNIT_BINS) $(TOOL_BINS)
.PHONY: test-build

check: deps
	$(MAKE) check-only

check-only: test-build
	BUILDDIR=$(abspath $(BUILDDIR)) tests/run.sh

check-asan: deps
	$(MAKE) BUILDDIR=build-asan SANITIZE=address,undefined check-only

demo: deps
	$(MAKE) all
	BUILDDIR=$(abspath $(BUILDDIR)) scripts/demo.sh

# ---- fuzzing (tests/fuzz/, docs/fuzzing.md) ----------------------------------------------
# The harnesses are built by a second make in $(FUZZ_BUILDDIR) with clang: the libraries'
# objects with -fsanitize=fuzzer-no-link (coverage) plus ASan and UBSan, each harness linked
# with -fsanitize=fuzzer (libFuzzer's main). Harness NAME is tests/fuzz/fuzz-NAME.c, its
# seeds tests/fuzz/corpus/NAME/, its crash reproducers tests/fuzz/regress/NAME/.
FUZZ_BUILDDIR ?= build-fuzz
FUZZ_CC ?= clang
FUZZ_SANITIZE ?= address,undefined
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ ?=
AFL_BUILDDIR ?= build-afl
AFL_CC ?= $(firstword $(foreach c,afl-clang-lto afl-clang-fast,$(shell command -v $(c) 2>/dev/null)))
FUZZ_LINK ?= -fsanitize=fuzzer
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILDDIR)/fuzz/%,$(FUZZ_SRCS))
fuzz_env = FUZZ_BUILDDIR=$(abspath $(FUZZ_BUILDDIR)) AFL_BUILDDIR=$(abspath $(AFL_BUILDDIR)) \
           FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS)

fuzz-build:
	$(MAKE) BUILDDIR=$(FUZZ_BUILDDIR) CC=$(FUZZ_CC) \
	    SANITIZE=fuzzer-no-link,$(FUZZ_SANITIZE) FUZZ_LINK=-fsanitize=fuzzer fuzz-bins

fuzz: fuzz-build
	$(fuzz_env) tests/fuzz/run.sh fuzz $(FUZZ)

fuzz-regress: fuzz-build
	$(fuzz_env) tests/fuzz/run.sh regress $(FUZZ)

# AFL++ instruments at compile time (afl-clang-lto, else afl-clang-fast) and turns
# -fsanitize=fuzzer at link time into its libAFLDriver, which calls the same
# LLVMFuzzerTestOneInput. Run with afl-fuzz as docs/fuzzing.md shows.
fuzz-afl:
	@if [ -z "$(AFL_CC)" ]; then \
	    echo "fuzz-afl: neither afl-clang-lto nor afl-clang-fast found (Debian: afl++)" >&2; \
	    exit 1; fi
	$(MAKE) BUILDDIR=$(AFL_BUILDDIR) CC=$(AFL_CC) SANITIZE=$(FUZZ_SANITIZE) \
	    FUZZ_LINK=-fsanitize=fuzzer fuzz-bins

fuzz-afl-run: fuzz-afl
	$(fuzz_env) tests/fuzz/run.sh afl $(FUZZ)

# Internal: the harnesses of $(BUILDDIR), compiled with the flags of the make above.
fuzz-bins: $(FUZZ_BINS)

# Harnesses that test pieces of the CLI (which is not a library) link just those objects.
$(BUILDDIR)/fuzz/fuzz-restore-map: $(call obj,cli/restore-map.c cli/common.c)

$(BUILDDIR)/fuzz/fuzz-%: $(BUILDDIR)/obj/tests/fuzz/fuzz-%.o $(LIBVMAD) $(LIBVMA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $(FUZZ_LINK) -o $@ $(filter %.o,$^) $(LIBVMAD) $(LIBVMA) \
	    $(DAEMON_LDLIBS)

bench: test-build
	BUILDDIR=$(abspath $(BUILDDIR)) bench/run.sh

bench-vma: all
	BUILDDIR=$(abspath $(BUILDDIR)) bench/vma-bench.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BUILDDIR)/vma $(DESTDIR)$(BINDIR)/vma
	install -m 0644 docs/vma.1 $(DESTDIR)$(MANDIR)/man1/vma.1
	if [ -x $(BUILDDIR)/vma-web ]; then \
	    install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 && \
	    install -m 0755 $(BUILDDIR)/vma-web $(DESTDIR)$(BINDIR)/vma-web && \
	    install -m 0644 docs/vma-web.8 $(DESTDIR)$(MANDIR)/man8/vma-web.8; \
	fi
	if [ -x $(BUILDDIR)/vmad ]; then \
	    install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 && \
	    install -m 0755 $(BUILDDIR)/vmad $(DESTDIR)$(SBINDIR)/vmad && \
	    install -m 0644 docs/vmad.8 $(DESTDIR)$(MANDIR)/man8/vmad.8; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vma $(DESTDIR)$(MANDIR)/man1/vma.1 \
	      $(DESTDIR)$(SBINDIR)/vmad $(DESTDIR)$(MANDIR)/man8/vmad.8 \
	      $(DESTDIR)$(BINDIR)/vma-web $(DESTDIR)$(MANDIR)/man8/vma-web.8

clean:
	rm -rf build build-*

# ---- hardening: ThreadSanitizer, valgrind, fault injection --------------------------
#   make check-tsan      the backup and NBD tests in a ThreadSanitizer build (build-tsan/)
#   make check-valgrind  the unit and CLI tests under valgrind (memcheck, build-valgrind/)
#   $(BUILDDIR)/tests/faultinj.so  LD_PRELOAD shim that makes I/O calls fail on request
#                        (tests/faultinj/faultinj.c; the tests/functional/faults-*.sh use it)
# A ThreadSanitizer build sees glib's futex-based GMutex/GCond through annotations:
# tests/tsan/tsan-glib.h is force-included into every object (see its comment).
ifneq ($(findstring thread,$(SANITIZE)),)
CPPFLAGS += -include tests/tsan/tsan-glib.h
endif
TSAN_TESTS ?= unit/test-backup unit/test-blockdev unit/test-nbd-server unit/test-writer \
              unit/test-alloc-track \
              functional/nbd- functional/qmp-backup functional/vma-backup-vmad- functional/faults- \
              functional/backup- functional/restore- functional/bitmap-nbd-
FAULTINJ := $(BUILDDIR)/tests/faultinj.so
test-build: $(FAULTINJ)
$(FAULTINJ): tests/faultinj/faultinj.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(WARN) -D_GNU_SOURCE -fPIC -shared -o $@ $< -ldl
.PHONY: check-tsan check-valgrind
check-tsan: deps
	$(MAKE) BUILDDIR=build-tsan SANITIZE=thread test-build
	BUILDDIR=$(abspath build-tsan) TESTS="$(TSAN_TESTS)" tests/tsan/run-tsan.sh
# its own build: VMA_SANITIZED makes cluster buffers heap memory (not the mmap pool of
# vma-common.c), so that memcheck sees their leaks and uninitialised bytes
check-valgrind: deps
	$(MAKE) BUILDDIR=build-valgrind CFLAGS=-DVMA_SANITIZED test-build
	BUILDDIR=$(abspath build-valgrind) tests/valgrind/run-valgrind.sh

-include $(shell find $(BUILDDIR)/obj -name '*.d' 2>/dev/null)
