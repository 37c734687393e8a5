FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CCCD_HOST=0.0.0.0 CCCD_DATABASE_URL=sqlite+aiosqlite:////data/cccd-bot.sqlite3
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY storage ./storage
RUN pip install --no-cache-dir . && useradd --create-home cccd && mkdir -p /data && chown cccd /data
USER cccd
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
CMD ["cccd-bot", "serve"]
