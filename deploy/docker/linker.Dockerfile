# syntax=docker/dockerfile:1
# callstream linker: resolved, safe links to the original of a call
# Build from the repository root:  docker build -f deploy/docker/linker.Dockerfile -t callstream-linker .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with this service, contracts and runtime, pinned by constraints.txt ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY constraints.txt ./
COPY contracts/ contracts/
COPY runtime/ runtime/
COPY services/linker/ services/linker/
RUN python -m venv /opt/callstream \
 && /opt/callstream/bin/pip install --no-cache-dir --constraint constraints.txt \
        ./contracts ./runtime ./services/linker

# ---- run: the slim base, the virtualenv, an unprivileged user ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="callstream-linker" \
      org.opencontainers.image.description="callstream linker: resolved, safe links to the original of a call"
RUN groupadd --system --gid 10001 callstream \
 && useradd --system --uid 10001 --gid callstream --no-create-home --shell /usr/sbin/nologin callstream
COPY --from=build /opt/callstream /opt/callstream
# Services bind 127.0.0.1 by default; in a container they must listen on every interface.
ENV PATH=/opt/callstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CALLSTREAM_HOST=0.0.0.0 \
    CALLSTREAM_LOG_FORMAT=json \
    CALLSTREAM_LINKER_PORT=8081
USER 10001:10001
EXPOSE 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['CALLSTREAM_LINKER_PORT'] + '/health/live', timeout=2)"]
# Exec form: the entry point is PID 1 and receives SIGTERM itself (graceful shutdown); `setup` and
# `migrate` are the other commands (`docker run IMAGE setup`).
ENTRYPOINT ["callstream-linker"]
CMD ["serve"]
