# syntax=docker/dockerfile:1
# The collector as a container: a wheel is built in a throw-away stage, then installed into a
# slim Python image that runs as an unprivileged user. Builds for amd64 and arm64 alike
# (every dependency ships binary wheels for both), e.g.
#   docker buildx build --platform linux/amd64,linux/arm64 -t retrofit-collector .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package needs (see .dockerignore): a change in tests or docs reuses the cache.
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY adapters ./adapters
COPY api ./api
# The project's wheel plus a wheel of every dependency, so the runtime stage needs no compiler
# and no network.
RUN pip wheel --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="retrofit-collector" \
      org.opencontainers.image.description="Collects sensor data from retrofitted machines (Modbus, OPC UA, MQTT) into one SQL ledger" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COLLECTOR_CONFIG=/etc/collector/collector.yaml
# A fixed uid/gid, so a bind-mounted data folder can be chowned on the host; dialout gives
# access to RS-485 adapters passed in with `devices:`.
RUN groupadd --system --gid 10001 collector \
 && useradd --system --uid 10001 --gid collector --groups dialout \
        --home-dir /var/lib/collector --shell /usr/sbin/nologin collector \
 && mkdir -p /etc/collector /var/lib/collector \
 && chown collector:collector /var/lib/collector
# The wheels are mounted for this one step, so they never become a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels retrofit-collector \
 && collector --help > /dev/null

USER collector
WORKDIR /var/lib/collector
# The spool (and a SQLite ledger, if one is configured) lives here.
VOLUME ["/var/lib/collector"]
EXPOSE 8080
# Healthy while the API answers; the body says which sources are down ("degraded"), which is
# the status page's job to show, not a reason to restart the container. No curl in a slim image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('COLLECTOR_HEALTH_URL', 'http://127.0.0.1:8080/api/v1/health'), timeout=4)"]
# SIGTERM makes the collector flush what it holds and exit 0; give it time (stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["collector"]
CMD ["run", "-c", "/etc/collector/collector.yaml"]
