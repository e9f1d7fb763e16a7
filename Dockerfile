# lookalike: the Discord bot with CPU-only torch.
#   docker build -t lookalike .
#   docker run -d --name lookalike -e DISCORD_TOKEN=... -v lookalike-data:/data lookalike
# The database lives on the /data volume; the schema is migrated on every start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# CPU-only builds from PyTorch's CPU wheel index (no CUDA libraries): the big layer, cached on its own.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 torchvision==0.28.0

COPY pyproject.toml README.md ./
COPY recommender ./recommender
COPY bot ./bot
COPY migrations ./migrations
# Check the installed package (from outside /app, so the source tree can't stand in for it).
RUN pip install . && cd / && python -c "import recommender.engine, bot.app, migrations" && lookalike --help > /dev/null

RUN useradd --create-home --uid 10001 lookalike \
    && mkdir -p /data \
    && chown lookalike:lookalike /data
USER lookalike

ENV LOOKALIKE_DB=/data/lookalike.db \
    LOOKALIKE_HEALTH_FILE=/data/health \
    TORCH_HOME=/data/torch
VOLUME ["/data"]
WORKDIR /data

# Healthy while the bot is connected and its event loop keeps stamping the health file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["lookalike", "health"]

ENTRYPOINT ["lookalike"]
CMD ["run"]
