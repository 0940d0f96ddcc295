# syntax=docker/dockerfile:1
# One image for every cyberclaims service: the four services share one code base and differ
# only by the command (`cyberclaims serve intake|triage|payout|notify`, `cyberclaims migrate
# <service>`), so one build, one scan and one tag deploy the whole system consistently.

# --- build: resolve and install the package and its dependencies into a virtualenv ----------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY cyberclaims ./cyberclaims
# A regular (non-editable) install: the migrations (env.py, script.py.mako, versions/) ship
# as package data, so `cyberclaims migrate` works from site-packages.
RUN pip install --upgrade pip \
 && pip install .

# --- runtime: the virtualenv only, no build tools, no source tree, a numeric non-root user ---
FROM python:3.11-slim AS runtime

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

EXPOSE 8001 8002 8003 8004

# Asks the running service's own /healthz (the port comes from the service's settings).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/cyberclaims/healthcheck.py"]

ENTRYPOINT ["cyberclaims"]
CMD ["--help"]
