# Convenience front end to the CMake build. The README's two commands:
#   make demo   - install Debian packages, build, run the main job on the defaults
#   make test   - install Debian packages, build (Release and ASan+UBSan), run CTest
JOBS ?= 2
BUILD ?= build
ASAN_BUILD ?= build-asan

# Build and test dependencies, all from Debian.
DEB_PACKAGES = build-essential cmake pkg-config xz-utils \
  libjansson-dev zlib1g-dev liblzma-dev libssl-dev libcmocka-dev dataset-fashion-mnist \
  libjpeg62-turbo-dev libpng-dev libcurl4-openssl-dev clang libclang-rt-14-dev \
  python3-numpy python3-cffi python3-torch python3-torchvision libopenblas0-pthread \
  libmicrohttpd-dev libgnutls28-dev openssl \
  libwebp-dev libavcodec-dev libavutil-dev libzstd-dev \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
  libopenmpi-dev openmpi-bin

.PHONY: fuzz all deps models build asan test test-fast demo clean experiments bench bench-serve arm arm-test

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The F16 reference models ship xz-compressed; decompress once so that every
# run does not pay for liblzma (the loader reads either form).
models: deps
	@for f in models/*.safetensors.xz; do [ -e "$${f%.xz}" ] || xz -dk "$$f"; done

build: deps models
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCWBA_SANITIZE=ON -DCWBA_NATIVE=OFF
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# Release tests, then the same tests under ASan+UBSan (tests labelled "slow"
# run in the Release build only: under the sanitizers they would take hours).
test: build asan fuzz arm
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS) -LE slow
	cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz
	cd $(ARM_BUILD) && ctest --output-on-failure -j$(JOBS)

# AArch64 cross build (gcc-aarch64-linux-gnu) of the dependency-free layers
# and their unit tests, run under qemu-user (cmake/minimal.cmake; about two
# minutes on two idle cores). Emulation says nothing about speed on ARM.
ARM_BUILD ?= build-arm
arm: deps
	cmake -S . -B $(ARM_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
	cmake --build $(ARM_BUILD) -j$(JOBS)

arm-test: arm
	cd $(ARM_BUILD) && ctest --output-on-failure -j$(JOBS)

# libFuzzer targets for every parser of outside files (clang, ASan+UBSan),
# run for a bounded time by the "fuzz" CTest label (fuzz/README.md).
FUZZ_BUILD ?= build-fuzz
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCWBA_FUZZ=ON -DCWBA_NATIVE=OFF
	cmake --build $(FUZZ_BUILD) --target fuzz_all -j$(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -LE slow

demo: build
	./$(BUILD)/cwba reproduce

# Performance figures of docs/performance.md: cwba vs PyTorch and ONNX Runtime
# in one run (takes tens of minutes; see bench/run.sh).
# (npm is checked as a command: a Node.js from elsewhere, e.g. nodesource's
# nodejs package, ships its own npm and conflicts with Debian's.)
BENCH_PACKAGES = python3-torch python3-torchvision python3-numpy libopenblas0-pthread wrk curl
bench: deps
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	BUILD=$(BUILD) bench/run.sh

# cwba serve under load (wrk, loopback; about 15 minutes): docs/performance.md.
bench-serve: build
	@command -v wrk >/dev/null && command -v curl >/dev/null || { \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq wrk curl; }
	BUILD=$(BUILD) bench/serve.sh

# Every table and plot of experiments/README.md (resumable; hours).
experiments: build
	@dpkg-query -W -f='$${Status}\n' gnuplot-nox 2>/dev/null | grep -q 'install ok installed' || \
	  { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq gnuplot-nox; }
	experiments/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(ARM_BUILD)
