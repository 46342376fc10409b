# Headwater image: one image for `apply`, `worker` and `serve` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEADWATER_HOME=/data

WORKDIR /app

# Copy only what the package build needs (the repository has no .dockerignore, so `COPY . .`
# would drag in .venv and caches). README* is a wildcard so the build works with or without it.
COPY pyproject.toml README* ./
COPY headwater/ headwater/
COPY schemas/ schemas/
COPY connectors/ connectors/
COPY stream_workers/ stream_workers/
COPY serving/ serving/
# The sample feature definitions, for `headwater apply examples/`; also packaged (the demo's),
# through the headwater/example_definitions link, so they are copied before the install.
COPY examples/ examples/
RUN pip install .

# Non-root runtime user; /data is HEADWATER_HOME (catalog + Delta tables) and is created here so
# a fresh named volume mounted on it inherits this ownership.
RUN useradd --create-home --uid 10001 --user-group headwater \
    && mkdir -p /data \
    && chown headwater:headwater /data
USER headwater

EXPOSE 8000
CMD ["headwater", "serve"]
