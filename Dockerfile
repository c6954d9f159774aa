# model-registry worker image: `docker run IMAGE` runs the worker, `docker run IMAGE migrate`
# applies the schema. Two stages so the runtime image holds the installed wheel, not the sources.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY worker ./worker
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# The wheel carries the migrations as worker/_migrations, which `modelreg migrate` falls back to.
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin modelreg
USER 10001:10001
# /healthz, /readyz and /metrics (Prometheus) of `modelreg worker`.
ENV MODELREG_HTTP_PORT=8080
EXPOSE 8080
# Liveness: the worker's event loop answers /healthz (the slim image has no curl).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MODELREG_HTTP_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["modelreg"]
CMD ["worker"]
