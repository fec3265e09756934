# The VibeCode backend image: daphne serving HTTP and the terminal WebSockets.
#
# Online:  docker compose up -d --build            (BASE and NODE_IMAGE are official images)
# Offline: make images                              (BASE=vibecode-base:bookworm, the project's
#          debootstrap base; NODE_IMAGE=vibecode-sandbox:latest, which already has node and npm)
# Both build with `--network host` so apt, pip and npm reach their mirrors during the build.
# EXTRA_CA_CERTS (PEM text) adds certificate authorities that pip, npm and the running app
# trust, for networks that reach PyPI and npm through a TLS-inspecting proxy; scripts/images.sh
# passes the host's /usr/local/share/ca-certificates. apt uses plain HTTP and needs none.
#
# Three stages, so that neither npm nor the 100 MB of node_modules end up in the final image:
#   assets  npm ci from package.json + package-lock.json (skipped when there is no lockfile)
#   static  the final image's Python plus node_modules: collectstatic into /app/staticfiles
#   final   Debian's python3, a venv with the pinned requirements, the app, the collected files
ARG BASE=debian:bookworm-slim
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS assets
ARG EXTRA_CA_CERTS=""
USER root
WORKDIR /src
# requirements.txt is there only so that the COPY has a source when package*.json do not exist.
COPY requirements.txt package*.json ./
RUN mkdir -p node_modules \
    && if [ -f package-lock.json ]; then \
        if [ -n "$EXTRA_CA_CERTS" ]; then \
            printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; \
            export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; \
        fi; \
        npm ci --no-audit --no-fund --loglevel=error --cache /tmp/npm-cache && rm -rf /tmp/npm-cache; \
    fi

FROM ${BASE} AS python
# An image made by `docker import` has no environment at all: spell PATH out in full.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ARG DEBIAN_FRONTEND=noninteractive
ARG EXTRA_CA_CERTS=""
RUN printf '%s\n' \
        'path-exclude /usr/share/doc/*' \
        'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' \
        > /etc/dpkg/dpkg.cfg.d/vibecode-nodoc \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
    && if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" | awk '/BEGIN CERTIFICATE/ { n++ } n { print > ("/usr/local/share/ca-certificates/extra-" n ".crt") }' \
        && update-ca-certificates; \
    fi
RUN python3 -m venv /opt/venv
WORKDIR /app
COPY requirements.txt ./
# The pinned requirements, as `make run` installs them.
RUN pip install -r requirements.txt

FROM python AS static
# Build-time values only: this stage is not shipped, and the secrets are not real ones.
ENV DEBUG=false \
    DJANGO_SETTINGS_MODULE=vibecode_project.settings \
    DJANGO_SECRET_KEY=collectstatic-only \
    JWT_SECRET=collectstatic-only \
    VIBECODE_VAR_DIR=/tmp/var \
    VIBECODE_STATIC_ROOT=/app/staticfiles
COPY --from=assets /src/node_modules ./node_modules
COPY . .
RUN python manage.py collectstatic --noinput -v0
# At run time Django still checks that every STATICFILES_DIRS entry exists (staticfiles.W004),
# although with DEBUG off the files are only ever served from STATIC_ROOT. The final stage
# keeps the empty folders of the entries under node_modules, not their 100 MB of files.
RUN python -c "import django; django.setup(); from django.conf import settings; \
print('\n'.join(str(d[1] if isinstance(d, tuple) else d) for d in settings.STATICFILES_DIRS))" \
        > /tmp/all-dirs \
    && { grep '^/app/node_modules/' /tmp/all-dirs > /tmp/static-dirs || true; }

FROM python
ARG DEBIAN_FRONTEND=noninteractive
# pg_dump for `manage.py backup_all`, of the server's major version.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
# SSL_CERT_FILE: httpx and friends trust the system store (with EXTRA_CA_CERTS), not certifi's.
ENV DEBUG=false \
    VIBECODE_VAR_DIR=/app/var \
    VIBECODE_STATIC_ROOT=/app/staticfiles \
    DOCKER_HOST=unix:///var/run/docker.sock \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
COPY . .
COPY --from=static /app/staticfiles /app/staticfiles
COPY --from=static /tmp/static-dirs /tmp/static-dirs
# uid 10001: not 1000, the sandbox's `coder`, nor any id a Debian package takes.
# /srv/vibecode/static is where the entrypoint shares the collected files with nginx, and
# /backups where `manage.py backup_all --output /backups/...` writes: both are volumes, and an
# empty volume mounted on a folder takes the folder's owner.
RUN xargs -r mkdir -p < /tmp/static-dirs && rm /tmp/static-dirs \
    && groupadd --gid 10001 vibecode \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin vibecode \
    && mkdir -p /app/var /srv/vibecode/static /backups \
    && chown vibecode:vibecode /app/var /srv/vibecode/static /backups \
    && chmod 0755 deploy/backend/entrypoint.sh
USER vibecode
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/backend/healthcheck.py"]
ENTRYPOINT ["/app/deploy/backend/entrypoint.sh"]
# daphne worker processes on port 8000, one per CPU with the compose stack's PostgreSQL and
# Redis (VIBECODE_WORKERS; vibecode_project/serve.py). daphne runs with -v 0: its access log would
# record query strings, where terminal tickets and tokens travel.
ENV VIBECODE_HOST=0.0.0.0 VIBECODE_PORT=8000
CMD ["python", "-m", "vibecode_project.serve"]
