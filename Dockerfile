FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest ./ingest
COPY mappings ./mappings
COPY index_templates ./index_templates
COPY ilm ./ilm
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --uid 10001 --create-home ingest \
    && mkdir -p /var/lib/falco-ingest && chown ingest /var/lib/falco-ingest
USER 10001
ENTRYPOINT ["falco-ingest"]
CMD ["--help"]
