# metricast — top-level entry points. CMake + Ninja do the building; this file only
# sequences "install what is missing, configure, build, test".
#
#   make         build (release with debug info) into build/
#   make run     install missing packages, build, start `metricastd --demo`
#   make test    install missing packages, build, run every test through CTest,
#                then the whole suite again in an ASan+UBSan build (build-asan/)
#   make bench   build and run the benchmarks under bench/
#   make fuzz    build the libFuzzer targets with clang and run each (FUZZ_SECONDS, 60)

BUILD      ?= build
ASAN_BUILD ?= build-asan
CMAKE_GEN  ?= -G Ninja
CTEST_J    ?= 2
RUN_ARGS   ?= --demo

.PHONY: all build run test test-release test-asan deps deps-build asan bench fuzz clean

all: build

deps-build:
	@scripts/deps.sh --build

deps:
	@scripts/deps.sh

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

bench: deps build
	bench/run_all.sh $(BUILD)

fuzz: deps
	scripts/fuzz.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
