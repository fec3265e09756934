# The VibeCode backend image (daphne). A first version; the deployment issue hardens it.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBUG=false
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_SECRET_KEY=build JWT_SECRET=build-only-not-a-secret-0123456789abcdef \
    python manage.py collectstatic --noinput -v0
RUN useradd --uid 10001 --create-home vibecode && mkdir -p /app/var && chown vibecode /app/var
USER vibecode
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec daphne -b 0.0.0.0 -p 8000 vibecode_project.asgi:application"]
