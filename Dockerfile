FROM python:3.11-slim

WORKDIR /srv/edgeopt
# The CPU build of torch; PyPI's default wheel is a multi-GB CUDA build.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY app ./app
COPY devices ./devices
COPY predictors ./predictors
COPY search ./search
COPY migrations ./migrations
RUN pip install --no-cache-dir .

ENV EDGEOPT_HOST=0.0.0.0 \
    EDGEOPT_PORT=8000 \
    EDGEOPT_ARTIFACTS_DIR=/var/lib/edgeopt/artifacts
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
# Migrations on start; the import is idempotent, so restarts are cheap.
CMD ["edgeopt", "up"]
