# Custom Dataflow worker image: Beam's Python SDK image with altcorpus and all its dependencies preinstalled, so
# workers start in seconds instead of pip-installing the sdist that --setup_file ships (see docs/dataflow.md).
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/altcorpus-worker:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/altcorpus-worker:0.1.0
#   ... --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/altcorpus-worker:0.1.0 --sdk_location=container
# The tag must match the launcher's apache-beam (2.77) and Python (3.11): tests/test_dataflow.py checks both.
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/altcorpus
COPY pyproject.toml setup.py README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY training ./training
# apache-beam[gcp]==2.77.* is already satisfied by the image, so pip keeps the image's SDK and adds the rest.
# The install compiles the extract stage's C tag scanner (pipeline/html/_tagscan.c): a C compiler is installed first if
# the image has none, and the import check fails the build rather than ship the slower pure-Python fallback.
RUN (command -v cc >/dev/null || (apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*)) \
    && pip install --no-cache-dir . \
    && python -c "import pipeline.html._tagscan, pipeline.stages.extract, pipeline.stages.fetch, pipeline.corpus.stats"

# The allocator settings the local runner gives its workers (pipeline/core/local_runner.py, WORKER_MEMORY_ENV): glibc's
# malloc at two arenas, with fixed mmap (4 MB) and trim (64 MB) thresholds, and Arrow's buffers from it, else both keep
# what finished bundles freed and a worker's memory creeps up with the data it has seen. tests/pipeline/test_dataflow.py
# keeps the two lists the same.
ENV MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=67108864 ARROW_DEFAULT_MEMORY_POOL=system

# The image's ENTRYPOINT (/opt/apache/beam/boot, the SDK harness) is inherited unchanged: Dataflow starts it.
