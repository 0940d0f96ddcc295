# syntax=docker/dockerfile:1
# One image for every cyberclaims service: the six services share one code base and differ
# only by the command (`cyberclaims serve intake|triage|payout|notify|risk|insights`,
# `cyberclaims migrate <service>`), so one build, one scan and one tag deploy the whole system
# consistently.

# The base image of both stages, pinned to an exact Python patch release and Debian release: a
# rebuild of the same commit gets the same interpreter. A release build also pins the digest
# it resolved, so the bytes cannot change under the tag either:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm --format '{{json .Manifest.Digest}}'
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# and records it, with the digest of the image it built, in deploy/k8s/overlays/prod
# (kustomization.yaml, "Image digests").
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install the locked dependencies and the package into a virtualenv ----------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The dependencies first, from the lock (exact versions, every file checked against its hash):
# this layer is rebuilt only when the lock changes, not on every code change.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY cyberclaims ./cyberclaims
# A regular (non-editable) install of the project alone (--no-deps: nothing is resolved again):
# the migrations (env.py, script.py.mako, versions/) ship as package data, so
# `cyberclaims migrate` works from site-packages.
RUN pip install --no-deps .

# --- runtime: the virtualenv only, no build tools, no source tree, a numeric non-root user ---
FROM ${PYTHON_IMAGE} AS runtime

# UID/GID 10001 match runAsUser/runAsGroup of the Kubernetes manifests and `user:` in compose.
RUN groupadd --system --gid 10001 cyberclaims \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cyberclaims

COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/cyberclaims/healthcheck.py

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CYBERCLAIMS_ENV=production

# The working directory is read-only in Kubernetes; nothing is written below it.
WORKDIR /app
USER 10001:10001

EXPOSE 8001 8002 8003 8004 8005 8006

# Asks the running service's own /healthz (the port comes from the service's settings).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/cyberclaims/healthcheck.py"]

ENTRYPOINT ["cyberclaims"]
CMD ["--help"]
