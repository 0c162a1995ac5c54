# nodeprobe: one image for `nodeprobe agent`, `nodeprobe operator` and `nodeprobe check`.
#
#   docker build -t nodeprobe .
#
# Offline (no PyPI): put wheels for the dependencies and setuptools in build/wheelhouse
# (`pip download -d build/wheelhouse 'setuptools>=68' wheel '.[operator]'`) and pass
# --build-arg PIP_NO_INDEX=1. The base is pinned by digest; override it with
# --build-arg BASE_IMAGE=... (CI builds on a debootstrapped Debian bookworm it imports locally).
ARG BASE_IMAGE=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251

# ---- python: the base plus Debian's python3 (bookworm: 3.11), shared by both stages ----------
# python3-systemd is systemd's journal reader for the runtime-log check, built by Debian for this
# python3 against the libsystemd0 the base already has (~200 kB): no compiler in any stage.
FROM ${BASE_IMAGE} AS python
RUN if ! python3 -c 'import sys, systemd.journal' 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 python3-systemd \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# ---- builder: build the wheel and a self-contained venv ----------------------------------------
FROM python AS builder
ARG PIP_NO_INDEX=""
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# The glob keeps the wheelhouse optional: COPY fails only when no source matches at all.
COPY pyproject.toml build/wheelhous[e] /wheelhouse/
COPY pyproject.toml README.md ./
COPY nodeprobe ./nodeprobe
# The venv sees Debian's `systemd` package through a symlink (the stage below has it at the same
# path), and nothing else of the system's site-packages.
RUN python3 -m venv /opt/nodeprobe \
    && /opt/nodeprobe/bin/pip install --no-cache-dir --disable-pip-version-check \
         ${PIP_NO_INDEX:+--no-index} --find-links /wheelhouse "/src[operator]" \
    && /opt/nodeprobe/bin/pip uninstall -y --disable-pip-version-check pip setuptools wheel \
    && ln -s "$(python3 -c 'import os, systemd; print(os.path.dirname(systemd.__file__))')" \
         "$(/opt/nodeprobe/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/systemd" \
    && /opt/nodeprobe/bin/python -c 'from systemd import journal' \
    && /opt/nodeprobe/bin/nodeprobe --help >/dev/null

# ---- runtime: python3 and the venv, no compilers, no pip ---------------------------------------
FROM python
LABEL org.opencontainers.image.title="nodeprobe" \
      org.opencontainers.image.description="Keeps Kubernetes nodes healthy when the container runtime hangs, crashes or leaks" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/nodeprobe /opt/nodeprobe
ENV PATH=/opt/nodeprobe/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root by default; the agent's pod runs as 0 only because the runtime sockets are root's.
USER 65532:65532
ENTRYPOINT ["nodeprobe"]
CMD ["--help"]
