# The mindstream image: every worker role and the trainer run from it (see docker-compose.yml).
# Two stages: hnswlib builds from source and needs a compiler, which the runtime image does not carry.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CPU index: the default index resolves torch to CUDA wheels (several GB).
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model ./model
COPY stream ./stream
COPY infra ./infra
RUN pip install --no-cache-dir .

FROM python:3.11-slim
# libgomp: OpenMP runtime that torch, onnxruntime and hnswlib load at import.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 mindstream \
 && mkdir -p /models /state /data \
 && chown mindstream /models /state
USER mindstream
WORKDIR /home/mindstream
ENTRYPOINT ["mindstream"]
CMD ["--help"]
