# The nnInteractive-Slicer inference server on an NVIDIA GPU (docs/deployment.md).
#
#   docker build -t nninteractive-slicer-server .
#   docker run --gpus all -p 1527:1527 \
#     -e NNINTERACTIVE_SLICER_API_KEYS="alice:$(openssl rand -hex 24)" \
#     -v nninteractive-models:/models -v nninteractive-cache:/cache nninteractive-slicer-server
#
# The container listens on all interfaces, so it refuses to start without an API key. The model is
# downloaded into /models on first start (or mount a model folder and pass --model-dir).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    NNINTERACTIVE_MODEL_DIR=/models PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY Backends ./Backends
# PyPI's Linux torch wheels bundle CUDA; uvicorn[standard] brings the faster HTTP parser.
RUN pip install ".[server]" "uvicorn[standard]"

RUN useradd --create-home app && mkdir -p /models /cache && chown app /models /cache
USER app
EXPOSE 1527
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:1527/healthz', timeout=4)"
ENTRYPOINT ["nninteractive-slicer-server", "--host", "0.0.0.0", "--port", "1527", "--cache-dir", "/cache"]
