# criu --tmp-file: an overlay and patch series on pinned upstream CRIU.
# See README.md. Everything runs as root on Debian 12.

# Before anything else: upstream's make cannot build in a path with a
# space or a shell or make special character; say so at once.
CHECKOUT_PATH_PROBLEM := $(shell sh scripts/check-path.sh 2>&1)
ifneq ($(.SHELLSTATUS),0)
$(error $(CHECKOUT_PATH_PROBLEM))
endif

include scripts/upstream.conf

TREE      := build/criu-$(VERSION)
CRIU      := $(TREE)/criu/criu
PYTHON    := /usr/bin/python3
JOBS      ?= $(shell nproc)
PREFIX    ?= /usr/local
PYTEST    := $(PYTHON) -m pytest -p no:cacheprovider

export CRIU_TARBALL

.PHONY: all deps tree build crun check unit test e2e demo patches upstream-patch \
	check-series check-portability install deb clean distclean

# Every step that runs criu has a time limit: a hang becomes a failure
# that names the step (timeout(1) exits 124). The e2e tests and the demo
# also bound each criu run (CRIU_TIMEOUT, 120 s by default).
BOUND = ./scripts/bounded.sh
E2E_LIMIT ?= 35m

all: build

deps:
	@./scripts/install-deps.sh

# Assemble pristine + patches + overlay; cheap when nothing changed.
tree: deps
	@./scripts/assemble.sh

build: tree
	@$(MAKE) -s -C $(TREE) -j$(JOBS) criu lib crit >/dev/null
	@echo "built $(CRIU)"

# crun with CRIU, built from Debian's source against the libcriu of
# $(TREE) (scripts/build-crun.sh; about 30 s, then cached): build/crun/bin/crun,
# for test/e2e/test_crun.py.
crun: build
	@$(BOUND) 15m "make crun (scripts/build-crun.sh)" ./scripts/build-crun.sh

check: build
	@$(BOUND) 5m "criu check" $(CRIU) check

e2e: build crun
	@$(BOUND) $(E2E_LIMIT) "the e2e tests (pytest test/e2e)" $(PYTEST) test/e2e $(PYTEST_ARGS)

# The C unit tests, as upstream's CI runs them (make unittest): upstream's
# and criu/unittest/tmp-files-unit.c (the path rules, the tar header
# parsers, XXH64); "not ok" and the failed checks name a failing case.
.PHONY: unit
unit: build
	@$(BOUND) 5m "make unit (make unittest)" $(MAKE) -s --no-print-directory -C $(TREE) unittest

# The unit tests, zdtm and the upstream regression guard first: pytest's
# summary line is the last thing "make test" prints.
test: build crun
	@$(MAKE) -s --no-print-directory unit zdtm zdtm-regress
	@$(BOUND) $(E2E_LIMIT) "the e2e tests (pytest test/e2e)" $(PYTEST) test/e2e $(PYTEST_ARGS)

demo: build
	@$(BOUND) 15m "make demo" ./scripts/demo.sh $(CRIU)

# The frozen-time benchmark (bench/run.py, about 8 minutes):
# writes bench/results/RESULTS.md and frozen-time.png. BENCH_ARGS=--help.
.PHONY: bench
# Then the restore bench and the action-script comparison (about a
# minute each).
bench: build
	@BENCH_CMD="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
		$(BOUND) 30m "make bench" $(PYTHON) bench/run.py $(BENCH_ARGS)
	@$(MAKE) -s --no-print-directory bench-restore bench-action-script bench-precopy-frozen

# Restore time wiped and not wiped, against a cp -a measured in the same
# run (bench/restore_in_place.py, about a minute each): Markdown tables,
# `none`, and `zstd` against `zstd -d` of the same archive alone.
.PHONY: bench-restore
bench-restore: build
	@$(BOUND) 10m "make bench-restore" $(PYTHON) bench/restore_in_place.py $(CRIU) 256 3
	@$(BOUND) 10m "make bench-restore (zstd)" $(PYTHON) bench/restore_in_place.py $(CRIU) 512 3 --compress zstd

# --tmp-file-precopy's added frozen time with nothing changing, 10,000
# files of 4 KiB and 256 MiB + 2,000 small files, against a cp -a in the
# same run (bench/precopy_frozen.py, about a minute): a Markdown table.
.PHONY: bench-precopy-frozen
bench-precopy-frozen: build
	@BENCH_CRIU=$(CRIU) $(BOUND) 10m "make bench-precopy-frozen" $(PYTHON) bench/precopy_frozen.py --reps 7

# --tmp-file against upstream's action script scripts/tmp-files.sh, as
# shipped and with its quoting fixed, on the same workloads in one run
# (bench/action_script.py, under a minute): a Markdown table.
.PHONY: bench-action-script
bench-action-script: build
	@$(BOUND) 5m "make bench-action-script" $(PYTHON) bench/action_script.py $(CRIU) 3

# libFuzzer harnesses for the parsers of criu/tmp-files*.c (test/fuzz):
# FUZZ_TIME seconds a target (default 3 minutes), FUZZ_TARGETS to pick.
# Built with clang, ASan and UBSan in build/fuzz; a finding fails naming
# its input (build/fuzz/artifacts).
FUZZ_TIME    ?= 180
FUZZ_TARGETS ?= pax ustar stream path manifest
FUZZ_OUT     := build/fuzz

.PHONY: fuzz fuzz-build
fuzz-build: build
	@$(MAKE) -s --no-print-directory -C test/fuzz -j$(JOBS) TREE=$(abspath $(TREE)) OUT=$(abspath $(FUZZ_OUT)) all
fuzz: fuzz-build
	@$(BOUND) $$(( $(words $(FUZZ_TARGETS)) * ($(FUZZ_TIME) + 90) ))s "make fuzz" \
		./test/fuzz/run.sh $(abspath $(FUZZ_OUT)) $(FUZZ_TIME) $(FUZZ_TARGETS)

# The patched criu with AddressSanitizer and UBSan (CRIU's own ASAN=1, and
# -fsanitize=undefined through the same CFLAGS-ASAN, which CRIU keeps out
# of the parasite and restorer blobs), in its own tree: build/asan/criu/criu.
# Run tests against it with CRIU=: make asan-test (see README, "Tests").
ASAN_TREE  := build/asan
ASAN_FLAGS := ASAN=1 WERROR=0 CFLAGS-ASAN="-fsanitize=address -fsanitize=undefined"

.PHONY: asan asan-test
asan: deps
	@TREE=$(ASAN_TREE) ./scripts/assemble.sh
	@$(MAKE) -s -C $(ASAN_TREE) -j$(JOBS) $(ASAN_FLAGS) criu lib crit >$(ASAN_TREE)/build.log 2>&1 || \
		{ tail -30 $(ASAN_TREE)/build.log; echo "make asan failed: $(ASAN_TREE)/build.log"; exit 1; }
	@echo "built $(ASAN_TREE)/criu/criu (ASan + UBSan)"

# The e2e tests (ASAN_TESTS, default the tmp-file suites) against it.
# Reports go to files; one with a frame in criu/tmp-files*.c fails the run.
# ASAN_LEAKS=1 also reports leaks, not fatal (upstream CRIU leaks in every
# run: LSAN_OPTIONS=exitcode=0); but then a criu that cannot open its
# report file (a test's read-only root) exits 0 whatever it did.
ASAN_REPORTS := $(ASAN_TREE)/reports
ASAN_TESTS   ?= test_options.py test_dump.py test_restore.py test_fidelity.py test_precopy.py test_bad_images.py \
		test_attacks_user.py test_attacks_tree.py
ASAN_LEAKS   ?= 0
asan-test: asan
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@ASAN_OPTIONS=log_path=$(abspath $(ASAN_REPORTS))/asan:detect_leaks=$(ASAN_LEAKS) \
		$(if $(filter 1,$(ASAN_LEAKS)),LSAN_OPTIONS=exitcode=0) \
		UBSAN_OPTIONS=log_path=$(abspath $(ASAN_REPORTS))/ubsan:print_stacktrace=1 \
		CRIU=$(abspath $(ASAN_TREE))/criu/criu $(BOUND) $(E2E_LIMIT) "make asan-test" \
		$(PYTEST) $(addprefix test/e2e/,$(ASAN_TESTS)) $(PYTEST_ARGS); rc=$$?; \
		./scripts/sanitizer-reports.sh $(ASAN_REPORTS) || rc=1; exit $$rc

# Regenerate patches/ from the commits made in the build tree.
patches:
	@./scripts/refresh-patches.sh

# git format-patch series for a pristine upstream tree: dist/socket-buffer/
# (the libcriu fix, on its own) and dist/tmp-file/, authored and signed
# off by your git config user.name and user.email.
upstream-patch: tree
	@./scripts/export-series.sh dist

# Each series applied to the pristine release and built commit by commit.
check-series: tree
	@$(BOUND) 30m "make check-series" ./scripts/check-series.sh

# The new C files, the upstream C files the series changes and the new
# zdtm tests compiled with upstream's flags and -Werror for armv7, aarch64,
# clang and musl (scripts/check-portability.sh; about 3 minutes).
# PORTABILITY_TARGETS="armv7 musl" picks some of them.
check-portability: build
	@$(BOUND) 15m "make check-portability" ./scripts/check-portability.sh $(PORTABILITY_TARGETS)

# criu, libcriu and its headers under PREFIX; pycriu and crit are left
# out (upstream installs them with pip, which needs PyPI): use them from
# $(TREE)/lib and $(TREE)/crit with PYTHONPATH, or install the package of
# "make deb", which has them all (and is what runc finds as criu).
install: build
	$(MAKE) -s -C $(TREE) install-criu install-lib PREFIX=$(PREFIX) SKIP_PIP_INSTALL=1

# The Debian package "criu" in dist/ (criu, crit, pycriu, libcriu, compel,
# the man pages), built in a tree of its own (build/deb) with PREFIX=/usr;
# it installs over Debian's criu. DEB_REVISION=... sets its revision.
deb: deps
	@$(BOUND) 30m "make deb" ./scripts/build-deb.sh dist

clean:
	rm -rf dist
	[ ! -d $(TREE) ] || $(MAKE) -s -C $(TREE) clean

distclean:
	rm -rf build dist

# zdtm, CRIU's own test suite, in the assembled tree: the --tmp-file tests
# in the h, ns and uns flavors, then upstream's tests against an unpatched
# build (see scripts/zdtm-regress.list).
ZDTM_TESTS   := tmp_file00 tmp_file01 tmp_file02 tmp_file03 tmp_file04
ZDTM_FLAVORS ?= h,ns,uns

.PHONY: zdtm zdtm-regress

zdtm: build
	@$(MAKE) -s -C $(TREE)/test/zdtm/lib -j$(JOBS) >/dev/null
	@$(MAKE) -s -C $(TREE)/test/zdtm/static -j$(JOBS) $(ZDTM_TESTS) >/dev/null
	cd $(TREE)/test && PYENV_VERSION=system $(abspath $(BOUND)) 20m "make zdtm (zdtm.py run)" \
		$(PYTHON) zdtm.py run --keep-going -f $(ZDTM_FLAVORS) \
		-T '^zdtm/static/($(subst $(eval) ,|,$(ZDTM_TESTS)))$$'

# SAMPLE: runs that pass patched are also run unpatched, a different
# slice each day, so that a dead test (one that no longer passes
# unpatched) fails the guard; FULL=1 checks the whole list.
ZDTM_REGRESS_SAMPLE ?= 4

zdtm-regress: build
	@SAMPLE=$(ZDTM_REGRESS_SAMPLE) $(BOUND) 30m "make zdtm-regress" ./scripts/zdtm-regress.sh $(TREE)

# Live migration between two "hosts" on this machine (host B: a mount and
# pid namespace with its own tmpfs on /tmp), over 127.0.0.1: with criu
# page-server, then back with --lazy-pages. See scripts/demo-migrate.sh.
.PHONY: demo-migrate
demo-migrate: build
	@$(BOUND) 10m "make demo-migrate" ./scripts/demo-migrate.sh $(CRIU)
