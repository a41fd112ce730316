# The falco-ingest image: every dependency pinned by version and sha256 (requirements.lock,
# made by pip-compile from pyproject.toml; see README, Install on Kubernetes), installed
# before the package itself, which is built without fetching anything else. Runs as 10001.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY ingest ./ingest
COPY mappings ./mappings
COPY index_templates ./index_templates
COPY ilm ./ilm
COPY dashboards ./dashboards
COPY examples ./examples
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --uid 10001 --create-home ingest \
    && mkdir -p /var/lib/falco-ingest && chown ingest /var/lib/falco-ingest
USER 10001
ENTRYPOINT ["falco-ingest"]
CMD ["--help"]
