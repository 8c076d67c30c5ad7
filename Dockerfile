# syntax=docker/dockerfile:1
# feedops image: the worker, ctp-sim and the checkers (one image, the command picks the role).
# Built once by CI and pushed to GHCR by digest; run by docker-compose.yml (the runbook's
# compose runtime). Checked by hadolint (tests/unit/test_dockerfile.py); the dependency
# layer is replayed outside Docker by tests/integration/test_image_dependencies.py.
#
# Base pinned by digest: the multi-arch index of python:3.11-slim-bookworm (Python 3.11.16) as
# published on Docker Hub. Dependabot (.github/dependabot.yml) proposes new digests.
# The build stage compiles the one C part, the worker's hot path: the sink writer's line encoder and the pipeline's
# batch helpers (lib/feedops/worker/_jsonlines.c,
# with the flags of lib/feedops/buildext.py, as setup.py builds it for a checkout); the image gets the
# module and no compiler.
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS build
# hadolint ignore=DL3008  # the compiler only builds the module below; it does not reach the image
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY lib/feedops/worker/_jsonlines.c ./
RUN gcc -O2 -Wall -Werror -shared -fPIC -I"$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')" \
      _jsonlines.c -o "_jsonlines$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"

FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# version and revision come from the build (CI: the git tag or ref, the commit SHA)
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="feedops" \
      org.opencontainers.image.description="Operations toolkit for a China-futures market-data feed over the CTP API" \
      org.opencontainers.image.source="https://github.com/feedops/feedops" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Proprietary"

# openctp-ctp aborts on import without the zh_CN.GB18030 locale.
# hadolint ignore=DL3008  # Debian's locales follows the base image's point release (pinned by the digest above)
RUN apt-get update \
 && apt-get install -y --no-install-recommends locales \
 && localedef -c -i zh_CN -f GB18030 zh_CN.GB18030 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin feedops

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FEEDOPS_HOME=/app \
    PYTHONPATH=/app/lib

WORKDIR /app
# Dependencies first, from the lock with hashes (pip-compile --generate-hashes, see the lock's
# header, `make lock`): a code change rebuilds only the layers below. numpy stays: the worker's pipeline
# and coverage use it as well as ctp-sim (about 57 MB installed with its
# OpenBLAS, measured by the test above).
COPY requirements.lock ./
RUN pip install --no-compile --no-deps --require-hashes --requirement requirements.lock

# The code runs from /app/lib (PYTHONPATH), with the compiled module the build stage built.
COPY lib ./lib
COPY --from=build /src/_jsonlines.*.so ./lib/feedops/worker/
COPY scripts ./scripts
COPY envs ./envs
RUN mkdir -p var/feed var/flow var/cache var/state && chown -R feedops:feedops var

USER 10001:10001
EXPOSE 9108
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=6 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/livez', timeout=2)"]
CMD ["python", "scripts/operations/full_feed_subscription.py", "--log-format", "json"]
