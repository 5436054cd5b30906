# Build wheels in a full image, run from a slim one without compilers, as a non-root user.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /app collector
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER collector
ENV STAPLE_DATA_DIR=/app/data
EXPOSE 8000
CMD ["gunicorn", "-c", "python:collector.gunicorn_conf", "--bind", "0.0.0.0:8000", "collector:create_app()"]
