# metricast — top-level entry points. CMake + Ninja do the building; this file only
# sequences "install what is missing, configure, build, test".
#
#   make         build (release with debug info) into build/
#   make run     install missing packages, build, start `metricastd --demo`
#   make test    install missing packages, build, run every test through CTest,
#                then the whole suite again in an ASan+UBSan build (build-asan/)
#   make bench   build and run the benchmarks under bench/
#   make fuzz    build the libFuzzer targets with clang and run each (FUZZ_SECONDS, 60;
#                FUZZ_JOBS at a time, one per core; FUZZ_BUDGET caps the whole run)
#   make soak    10 minutes of mixed load on a release metricastd (SOAK_SECONDS, 600;
#                SOAK_SUBSCRIBERS, 1000): RSS and open descriptors sampled every 10 s must
#                stay flat; report in build/soak/report.md. Not part of CI.
#   make install     install metricastd, the metricast CLI, libmetricast (shared, static,
#                    header, metricast.pc), the man pages, unit and example configuration
#                    under PREFIX (/usr/local) into DESTDIR (empty); make uninstall undoes it
#   make deb         build dist/metricast_<version>_<arch>.deb (PREFIX=/usr) with dpkg-deb
#   make config-doc  regenerate docs/CONFIG.md, man/metricastd.8, examples/metricastd.conf
#                    from the option table (a CTest test fails while they are stale)

BUILD      ?= build
ASAN_BUILD ?= build-asan
CMAKE_GEN  ?= -G Ninja
# the tests mostly wait on timers, sockets and the daemon's seconds (the whole suite
# keeps about a fifth of two cores busy at -j2): twice the cores in parallel
CTEST_J    ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$((n * 2)))
RUN_ARGS   ?= --demo

PREFIX     ?= /usr/local
DESTDIR    ?=
DEB_BUILD  ?= build-deb
DIST       ?= dist

.PHONY: all build run test test-release test-asan deps deps-build deps-bench asan bench fuzz soak clean
.PHONY: install uninstall deb config-doc

all: build

deps-build:
	@scripts/deps.sh --build

deps:
	@scripts/deps.sh

deps-bench:
	@scripts/deps.sh --bench

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps-build $(BUILD)/build.ninja
	cmake --build $(BUILD)

run: deps-build build
	./$(BUILD)/metricastd $(RUN_ARGS)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DMETRICAST_SANITIZE=ON

asan: deps-build $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD)

test-release: deps build
	ctest --test-dir $(BUILD) --output-on-failure -j $(CTEST_J)

test-asan: deps asan
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(CTEST_J)

test: test-release test-asan

bench: deps-bench build
	bench/run_all.sh $(BUILD)

fuzz: deps
	scripts/fuzz.sh

# Debian's interpreter, as for the integration tests; the script needs only the standard
# library
soak: deps-build build
	METRICASTD=$(CURDIR)/$(BUILD)/metricastd /usr/bin/python3 tests/soak/soak.py

# --- install / packaging --------------------------------------------------------------
# install reconfigures $(BUILD) with CMAKE_INSTALL_PREFIX=$(PREFIX) (no rebuild of the
# code); cmake --install writes $(BUILD)/install_manifest.txt (paths without DESTDIR, which
# is recorded next to it), and uninstall removes exactly those files.
install: build
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD)
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD)
	@printf '%s' "$(DESTDIR)" > $(BUILD)/install_manifest.txt.destdir

uninstall:
	@packaging/uninstall.sh $(BUILD)/install_manifest.txt

deb: deps-build
	cmake -S . -B $(DEB_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	      -DCMAKE_INSTALL_PREFIX=/usr -DMETRICAST_SYSTEMD_UNITDIR=/lib/systemd/system >/dev/null
	cmake --build $(DEB_BUILD) --target metricastd config_doc metricast_cli metricast_shared \
	      metricast_static
	packaging/deb/build.sh $(DEB_BUILD) $(DIST)

config-doc: build
	cmake --build $(BUILD) --target config_doc_update

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(DEB_BUILD) $(DIST)
