# syntax=docker/dockerfile:1
# callstream console: the operators' web pages over the services' HTTP APIs
# Build from the repository root:  docker build -f deploy/docker/console.Dockerfile -t callstream-console .
# The base by digest: the tag moves with every Debian and CPython patch, the digest is one exact image
# (a multi-platform index). Taken from public pins of this tag (Python 3.11.16), not resolved against
# the registry from the machine that wrote it: refresh and check it as deploy/README.md, "Supply
# chain", says (`docker buildx imagetools inspect python:3.11-slim-bookworm`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:528257d48c1da0dcecc2e725d1ae34498d60c965f1241e39cd6a85a8859bdf84

# ---- build: a virtualenv with this service, contracts and runtime ----
# (The console's templates and static files are package data in services/console/src, so the wheel
# carries them.)
# Every third-party file is checked against the hashes in its lock (deploy/docker/requirements/, written
# by `./dev lock-images` from constraints.txt): a changed or substituted file on the index fails the
# build. --only-binary: no sdist is built, so no code from the index runs here and no unhashed build
# dependency is fetched. The local distributions are built with a hashed backend (build.txt) and
# installed --no-deps, so nothing named callstream-* is ever looked up on an index. The shipped venv
# has no pip and no setuptools (--without-pip; the build venv's pip installs into it with --python):
# Python 3.11's ensurepip would put setuptools 65.5.0, with known advisories, into the image.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY deploy/docker/requirements/build.txt deploy/docker/requirements/console.txt requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: -r requirements/build.txt \
 && python -m venv --without-pip /opt/callstream \
 && /opt/build/bin/pip --python /opt/callstream/bin/python install --no-cache-dir --require-hashes --no-deps --only-binary :all: -r requirements/console.txt
COPY contracts/ contracts/
COPY runtime/ runtime/
COPY services/console/ services/console/
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /src/wheels \
        ./contracts ./runtime ./services/console \
 && /opt/build/bin/pip --python /opt/callstream/bin/python install --no-cache-dir --no-deps /src/wheels/*.whl \
 && /opt/build/bin/pip --python /opt/callstream/bin/python check

# ---- run: the slim base, the virtualenv, an unprivileged user ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="callstream-console" \
      org.opencontainers.image.description="callstream console: the operators' web pages over the services' HTTP APIs"
RUN groupadd --system --gid 10001 callstream \
 && useradd --system --uid 10001 --gid callstream --no-create-home --shell /usr/sbin/nologin callstream
COPY --from=build /opt/callstream /opt/callstream
# Services bind 127.0.0.1 by default; in a container they must listen on every interface.
ENV PATH=/opt/callstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CALLSTREAM_HOST=0.0.0.0 \
    CALLSTREAM_LOG_FORMAT=json \
    CALLSTREAM_CONSOLE_PORT=8084
USER 10001:10001
EXPOSE 8084
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['CALLSTREAM_CONSOLE_PORT'] + '/health/live', timeout=2)"]
# Exec form: the entry point is PID 1 and receives SIGTERM itself (graceful shutdown). `serve` is the
# console's only command: it keeps no data, so it has no migrations and no streams to set up.
ENTRYPOINT ["callstream-console"]
CMD ["serve"]
