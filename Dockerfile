# The orchestrator image: `orch` is the entry point, so the command is the subcommand.
#   docker build -t orchestrator:local .
#   docker run --rm -it orchestrator:local demo    (a private redis-server inside the container)
#   docker compose build && docker compose up -d   (Redis, a scheduler and three workers)
# The server extra is installed too: `orch serve` (the HTTP API) runs from the same image.
# Your own tasks: an image FROM this one that adds your code (examples/docker/Dockerfile).
FROM python:3.11-slim

# redis-server is only there so `orch demo` works without a Redis of its own;
# workers and schedulers use ORCH_REDIS_URL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
RUN pip install ".[server]" && useradd --create-home --uid 10001 orch

USER orch
WORKDIR /home/orch
ENTRYPOINT ["orch"]
CMD ["--help"]
