# DRAFT image for docker-compose.yml (not built in CI: no Docker engine there).
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .
EXPOSE 8000 8001
