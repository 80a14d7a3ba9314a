# Kassa's production image: the API, the workers, the one-shot migration, the Temporal set-up
# and the codec server all run from it (docker-compose.yml). No development extras and no
# embedded servers: production reaches PostgreSQL and Temporal by address.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KASSA_ENVIRONMENT=production

WORKDIR /app
COPY pyproject.toml alembic.ini worker.py ./
COPY kassa kassa
COPY db db
COPY gateways gateways
COPY orchestration orchestration
COPY activities activities
COPY workflows workflows
COPY api api
COPY tooling tooling
COPY migrations migrations

# Editable, so `kassa migrate` finds alembic.ini and migrations/ beside the code
# (db/engine.py); the code stays root's, read-only to the user Kassa runs as.
RUN pip install -e . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin kassa

USER 10001:10001
EXPOSE 8000 8081
CMD ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
