# syntax=docker/dockerfile:1
#
# DSA application image: one image for every role (migrate, api, worker, beat).
# The role is chosen by the command, e.g. `dsa api --host 0.0.0.0 --port 8000`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
# Compilers are needed only here: pip builds a small C extension (core/_rowhash.c).
FROM ${PYTHON_IMAGE} AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"
RUN pip install --upgrade pip

WORKDIR /src
# the locked, hashed dependency set first (`make lock`), then the project alone
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock
COPY . .
RUN pip install --no-deps .

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime

# Fixed numeric uid/gid 10001: k8s/ runs the pods with runAsUser/runAsGroup/
# fsGroup 10001 (tests/deploy checks that the two agree).
RUN groupadd --system --gid 10001 dsa \
 && useradd --system --uid 10001 --gid 10001 \
      --home-dir /home/dsa --create-home --shell /usr/sbin/nologin dsa \
 && mkdir -p /var/lib/dsa/objects /var/lib/dsa/tmp \
 && chown -R 10001:10001 /var/lib/dsa

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DSA_HOME=/var/lib/dsa \
    DSA_STORAGE_URL=file:///var/lib/dsa/objects

# Smoke test: the installed console script starts in the runtime image.
RUN dsa --help >/dev/null

# /var/lib/dsa holds objects/ and tmp/; API and workers must share it, so
# docker-compose.yml / k8s/ mount one shared volume there (no VOLUME here, to
# avoid stray anonymous volumes for roles that do not need it).
#
# A writable, non-shared working directory (e.g. for celery beat's schedule file).
WORKDIR /home/dsa
USER 10001:10001

EXPOSE 8000

CMD ["dsa", "api", "--host", "0.0.0.0", "--port", "8000"]
