# feedops image: the worker, ctp-sim and the checkers (one image, the command picks the role).
# Built by CI and pushed to GHCR; run by docker-compose.yml (the runbook's compose runtime).
FROM python:3.11-slim-bookworm

# openctp-ctp aborts on import without the zh_CN.GB18030 locale (see CTP_FACTS.md).
# hadolint ignore=DL3008  # Debian's locales follows the base image's point release
RUN apt-get update \
 && apt-get install -y --no-install-recommends locales \
 && localedef -c -i zh_CN -f GB18030 zh_CN.GB18030 \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FEEDOPS_HOME=/app

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lib ./lib
RUN pip install --no-compile . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin feedops
COPY scripts ./scripts
COPY envs ./envs
RUN mkdir -p var/feed var/flow var/cache var/state && chown -R feedops:feedops var

USER 10001
EXPOSE 9108
CMD ["python", "scripts/operations/full_feed_subscription.py", "--log-format", "json"]
