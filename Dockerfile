# authapi: gunicorn serving wsgi:app, configured by environment (see README).
# Build: docker build -t authapi .
# Schema: docker run --rm --env-file .env authapi flask --app wsgi db upgrade
# Webhook delivery (with WEBHOOK_URLS set), the same image with another command,
# one or more containers beside the web ones; it serves no HTTP, so no health check:
#   docker run -d --env-file .env --no-healthcheck --stop-timeout 30 authapi flask --app wsgi webhooks run
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
# Every one of them ships wheels for this platform, so no compiler is needed.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The code belongs to root and is only readable by the user the app runs as.
COPY migrations ./migrations
COPY authapi ./authapi
COPY config ./config
COPY wsgi.py gunicorn.conf.py ./

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin authapi
USER 10001

EXPOSE 8000

# The image has no curl: probe with the Python it already has. A liveness
# check only; readiness (/health/ready) is for the load balancer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=4)"]

# gunicorn.conf.py binds 0.0.0.0:$PORT (leave BIND_ADDRESS unset in a
# container) with $WEB_CONCURRENCY workers. gunicorn stops gracefully on
# SIGTERM within 25 s: give `docker stop` --time 30.
CMD ["gunicorn", "wsgi:app"]
