# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are built in a throwaway stage; the runtime image is slim and
# runs as an unprivileged user. The container applies migrations, then serves with uvicorn.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY core ./core
COPY identity ./identity
COPY agreements ./agreements
COPY policy ./policy
COPY records ./records
COPY aggregation ./aggregation
COPY disclosure ./disclosure
COPY audit ./audit
COPY demo ./demo
COPY cli ./cli
COPY migrations ./migrations
RUN python -m venv /opt/backbone \
 && /opt/backbone/bin/pip install --upgrade pip \
 && /opt/backbone/bin/pip install '.[postgres]'

FROM python:3.11-slim AS runtime
ENV PATH=/opt/backbone/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BACKBONE_ENV=production \
    BACKBONE_DATA_DIR=/var/lib/backbone
RUN groupadd --system backbone && useradd --system --gid backbone --home /var/lib/backbone backbone \
 && mkdir -p /var/lib/backbone && chown backbone:backbone /var/lib/backbone
COPY --from=build /opt/backbone /opt/backbone
USER backbone
WORKDIR /var/lib/backbone
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# BACKBONE_DATABASE_URL and BACKBONE_MASTER_KEY (or BACKBONE_MASTER_KEY_FILE) must be provided.
CMD ["sh", "-c", "backbone migrate && exec backbone serve --host 0.0.0.0 --port 8000 --proxy-headers"]
