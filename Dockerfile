# The mentorflow worker. Build: docker build -t mentorflow .
# Run: docker compose up (see compose.yaml and the README's Deployment section).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The sources, installed with the exact versions the test suite passed with.
WORKDIR /opt/mentorflow
COPY pyproject.toml README.md ./
COPY infra/constraints.txt infra/constraints.txt
COPY schemas schemas
COPY rules rules
COPY infra infra
COPY workers workers
RUN pip install -c infra/constraints.txt . \
    && useradd --system --uid 10001 --user-group --no-create-home mentorflow \
    && install -d -o mentorflow -g mentorflow /var/lib/mentorflow

# faust creates its data folder in the working directory: make it writable.
WORKDIR /var/lib/mentorflow
# A numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# Probes and scrapes come from outside the container: listen on every address.
ENV MENTORFLOW_DATA_DIR=/var/lib/mentorflow \
    MENTORFLOW_WEB_HOST=0.0.0.0 \
    MENTORFLOW_WEB_PORT=6066 \
    MENTORFLOW_LOG_FORMAT=json

# /metrics, /healthz and /readyz.
EXPOSE 6066

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=4)"]

ENTRYPOINT ["mentorflow"]
CMD ["worker"]
