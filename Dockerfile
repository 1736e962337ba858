# The Cartridge control plane and worker image (docker-compose.yml runs it in several roles).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends git nginx-light ca-certificates tini musl-tools gcc \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cartridge
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
COPY deploy ./deploy
RUN pip install --no-cache-dir .
ENV CARTRIDGE_STATE_DIR=/var/lib/cartridge
CMD ["cartridge", "serve", "--host", "0.0.0.0", "--port", "8000"]
