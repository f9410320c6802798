# flowork in a container. The entrypoint is `python -m flowork`, so every Hydra override passes through:
#   make docker-build                          (docker build -t flowork .)
#   make docker-run ARGS='model=xgb'           (conf/, user_code/, data/ and outputs mounted from the project)
#   docker run --rm -e MLFLOW_TRACKING_URI=https://mlflow.example.com flowork model=ridge,xgb -m
# Tracking and data locations come from the environment (MLFLOW_TRACKING_URI, FLOWORK_DATA_URI); cloud credentials
# too (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*), never from the image.

FROM python:3.11-slim AS build
# make runs the project's one install command; it stays in this stage (unpinned: Debian's make is all we need)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt Makefile README.md ./
COPY flowork flowork
COPY hydra_plugins hydra_plugins
COPY conf conf
COPY user_code user_code
COPY data data
# The same command as the README and CI (Makefile: INSTALL): CPU torch first, then flowork under constraints.txt;
# here from PyTorch's CPU index (PyPI's torch is the multi-GB CUDA build) and without the dev tools.
RUN make install PYTHON=python3.11 VENV=/opt/venv EXTRAS=all TORCH_INDEX=https://download.pytorch.org/whl/cpu

FROM python:3.11-slim
RUN useradd --create-home --uid 1000 flowork \
    && mkdir -p /app/store /app/mlartifacts /app/multirun \
    && chown -R flowork /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=flowork /app /app
WORKDIR /app
USER 1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_TRACKING_URI=sqlite:////app/store/mlflow.db \
    FLOWORK_DATA_URI=data/seattle_weather_daily.csv
VOLUME ["/app/store", "/app/mlartifacts", "/app/multirun"]
ENTRYPOINT ["python", "-m", "flowork"]
CMD ["--help"]
