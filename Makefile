# Two entry points for a fresh Debian machine, as root: `make demo` and `make test`.
# Every target installs what it needs first; nothing here touches the host's own runtime sockets.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBS   := docker.io containerd runc busybox-static prometheus debootstrap git util-linux \
          libsystemd-dev pkg-config systemd-journal-remote docker-registry \
          socat iproute2 gcc libc6-dev

.PHONY: demo test e2e-node tools deps deps-system lint typecheck bench bench-peer stubs manifests release clean

demo: deps
	$(PY) -m tests.harness.demo

# The Go tools build in the background (tools/go/build --background, log in build/tools.log)
# while the tests that need none run first; a test that needs a tool waits for it. The status
# is pytest's, or the build's when pytest passed and the build failed.
test: deps
	@mkdir -p build
	tools/go/build --background build/tools.log
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  tools/go/build --wait build/tools.log || { [ $$rc -ne 0 ] || rc=1; }; exit $$rc

# The real-node end-to-end tests alone (kubelet + containerd 2.x, the agent as a pod from the
# project's image; they run in `make test` too), closing with one line `N passed, N failed`.
e2e-node: deps tools
	@mkdir -p build
	@$(PY) -m pytest -m real_node tests/integration/node --junitxml=build/e2e-node.xml \
	  $(PYTEST_ARGS); rc=$$?; $(PY) -m tests.harness.e2e_summary build/e2e-node.xml; exit $$rc

# The Go tools the suite runs (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kubectl, etcd, helm, and containerd 2.x beside Debian's 1.6; the pause binary and the CNI
# plugins of the real node), built from the Go module proxy once per machine into a cache
# outside the tree (tools/go/build).
tools:
	tools/go/build

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: deps
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m benchmarks.run $(BENCH)

# nodeprobe beside node-problem-detector + health-checker + crictl (built here from the Go module
# proxy by tools/go/build npd crictl); prints the side-by-side table. PEER="INJECTIONS STEADY_S LOAD_S".
bench-peer: deps
	$(PY) -m benchmarks.peer $(PEER)

stubs: deps
	$(PY) -m nodeprobe.cri.regenerate

# Re-render manifests/ with real helm (and copy the operator's CRDs into the chart) after a
# chart change.
manifests: deps
	tools/go/build helm
	$(PY) -m tools.helm write

# What a release publishes (tools/release.py): the image built and pushed to $(REGISTRY), then
# the chart with image.digest pinned to the digest the registry gave, packaged into
# build/release/ and pushed to oci://$(REGISTRY)/charts. Log in first (docker login, helm
# registry login). tests/deploy/test_release.py runs it against a registry on loopback.
REGISTRY ?= ghcr.io
release: deps
	tools/go/build helm
	$(PY) -m tools.release --registry $(REGISTRY)

deps: deps-system $(STAMP)

# Debian packages: the real runtimes, promtool, debootstrap (the image test's base), kubectl.
deps-system:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build/ *.egg-info .pytest_cache .mypy_cache .ruff_cache
