# syntax=docker/dockerfile:1
# Multi-stage build: the package and its dependencies are installed in a throwaway stage; the
# runtime stage receives only that virtual environment (no pip, setuptools or wheel, no test
# suites of the dependencies, no symbol tables, no binutils) and runs as an unprivileged user
# with a fixed id.
# The base can be replaced (a mirror, a pinned digest): --build-arg PYTHON_IMAGE=...
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The whole source tree less what .dockerignore leaves out (tests, benchmarks, virtual
# environments, data, caches): a new package needs no line here. pyproject.toml's package
# discovery decides what is installed; tests/test_container.py checks that the two agree.
# binutils' strip: some wheels ship their extension modules with symbol tables (OpenDP's alone
# is 275 MB, 168 MB without); the libraries that auditwheel vendored (*.libs/) are left as they are.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN python -m venv /opt/backbone \
 && /opt/backbone/bin/pip install --upgrade pip \
 && /opt/backbone/bin/pip install --no-compile '.[postgres]' \
 && /opt/backbone/bin/pip uninstall --yes pip setuptools wheel \
 && find /opt/backbone -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
 && find /opt/backbone/lib -type f -size +1M \( -name '*.so' -o -name '*.so.*' \) \
      -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
 && /opt/backbone/bin/python -m compileall -q -j 0 /opt/backbone/lib

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/backbone/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BACKBONE_ENV=production \
    BACKBONE_DATA_DIR=/var/lib/backbone
# A fixed user and group id, so that a mounted master key file can be given to it (chown 10001).
RUN groupadd --system --gid 10001 backbone \
 && useradd --system --uid 10001 --gid backbone --home-dir /var/lib/backbone backbone \
 && mkdir -p /var/lib/backbone && chown backbone:backbone /var/lib/backbone
COPY --from=build /opt/backbone /opt/backbone
USER backbone
WORKDIR /var/lib/backbone
# The data directory (BACKBONE_DATA_DIR): a named volume, never the container's own layer.
VOLUME ["/var/lib/backbone"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# BACKBONE_DATABASE_URL and BACKBONE_MASTER_KEY_FILE (or BACKBONE_MASTER_KEY) must be given:
# with BACKBONE_ENV=production every command refuses to start without them (status 2).
# One container alone migrates, then serves; several (compose.yaml) leave migrating to one
# `backbone migrate` and run `backbone serve` only.
CMD ["sh", "-c", "backbone migrate && exec backbone serve --host 0.0.0.0 --port 8000 --proxy-headers"]
