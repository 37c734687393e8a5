# cccd-bot: build the dependencies from the lock file in one stage, run as a non-root user in another.
# docker build -t cccd-bot . ; see deploy/docker-compose.yml and README.md ("Chạy bằng Docker").

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY storage ./storage
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim AS run
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    CCCD_HOST=0.0.0.0 CCCD_PORT=8080 CCCD_LOG_FORMAT=json \
    CCCD_DATABASE_URL=sqlite+aiosqlite:////data/cccd-bot.sqlite3
RUN useradd --system --uid 10001 --create-home --home-dir /home/cccd cccd \
    && mkdir -p /data && chown cccd:cccd /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/cccd
USER cccd
VOLUME ["/data"]
EXPOSE 8080
# Liveness on the configured port: the process answers /healthz (readiness is /readyz).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os,sys,urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CCCD_PORT', '8080'), timeout=2).status != 200)"
CMD ["cccd-bot", "serve"]
