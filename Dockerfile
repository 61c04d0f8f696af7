# syntax=docker/dockerfile:1
# siemconn in one slim container: no broker, no second container.
#   docker build -t siemconn .
#   docker run -d --restart unless-stopped -e BASE_URL -e CLIENT_ID -e CLIENT_SECRET \
#     -v "$PWD/config.json:/app/config.json:ro" -v "$PWD/cert:/app/cert:ro" \
#     -v siemconn-data:/app/data -v siemconn-logs:/app/logs siemconn
# The base is the interpreter the test suite runs on (CPython 3.11, Debian 12); both stages must use
# the same image because the venv's python is a symlink to the base's /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of the project, installed with its dependencies into /opt/venv ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# the optional C encoder and page transcoder (src/siemconn/queue/*.c) need a compiler and Python's
# headers, in this stage only; where they cannot be installed the wheel is built without them (the same
# bytes, more CPU per event; the service's start-up log line names the encoder in use)
# hadolint ignore=DL3008
RUN if ! command -v gcc >/dev/null; then \
      headers="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"; \
      dev=""; [ -e "$headers" ] || dev="python3-dev"; \
      { apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev $dev \
        && rm -rf /var/lib/apt/lists/*; } || echo "no C compiler: siemconn is built without its C encoder"; \
    fi
# VERSION, REVISION and SOURCE_DATE_EPOCH are given by `make release`; a plain build works without them
ARG VERSION=""
ARG REVISION=""
ARG SOURCE_DATE_EPOCH=""
COPY requirements.lock requirements-build.lock pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
# Every dependency and the build backend come from the locks, hash-checked: the image holds exactly the
# versions that were tested. The wheel is stamped with REVISION (siemconn --version) and must carry
# VERSION when one is given. --no-compile: ~7 MB smaller; the modules are compiled in memory at start.
# The SBOM (CycloneDX JSON) lists every distribution of /opt/venv with its version and hash.
# (the backend goes into its own venv: a Debian-packaged python refuses installs into the system)
RUN if [ -z "$SOURCE_DATE_EPOCH" ]; then unset SOURCE_DATE_EPOCH; fi \
 && python -m venv --without-pip /opt/build \
 && pip --python /opt/build/bin/python install --no-cache-dir --require-hashes -r requirements-build.lock \
 && SIEMCONN_REVISION="$REVISION" pip --python /opt/build/bin/python wheel --no-cache-dir --no-deps \
        --no-build-isolation --wheel-dir /wheels . \
 && { [ -z "$VERSION" ] || ls /wheels/siemconn-"$VERSION"-*.whl; } \
 && python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir --no-compile --require-hashes -r requirements.lock \
 && pip --python /opt/venv/bin/python install --no-cache-dir --no-compile --no-deps /wheels/*.whl \
 && /opt/venv/bin/python -m siemconn.devtools.sbom --output /sbom/siemconn.cdx.json

# --- runtime: the base image, the venv and an unprivileged user -----------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=""
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="siemconn" \
      org.opencontainers.image.description="Vectra RUX events to syslog (UDP/TCP/TLS) with a durable queue" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
# data and logs belong to the service user so that new named volumes inherit that owner;
# cert is mounted read-only by the user
RUN groupadd --system --gid 10001 siemconn \
 && useradd --system --uid 10001 --gid siemconn --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin siemconn \
 && install -d -o 10001 -g 10001 -m 0750 /app/data /app/logs \
 && install -d -m 0755 /app/cert
COPY --from=build /opt/venv /opt/venv
# the SBOM of /opt/venv, at a fixed path: docker run --rm --entrypoint cat IMAGE /usr/share/doc/siemconn/sbom.cdx.json
COPY --from=build /sbom/siemconn.cdx.json /usr/share/doc/siemconn/sbom.cdx.json
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
VOLUME ["/app/data", "/app/logs", "/app/cert"]
STOPSIGNAL SIGTERM
# Needs no open port: the service rewrites data_dir/siemconn.heartbeat every few seconds; this exits 1
# when the file is older than 60 s or says a syslog server has been down past health_window_seconds.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "siemconn.ops.heartbeat", "healthcheck", "--config", "/app/config.json"]
ENTRYPOINT ["python", "-m", "siemconn"]
CMD ["run", "--config", "/app/config.json"]
