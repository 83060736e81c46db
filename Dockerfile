# The Ramparts worker image (docker-compose.yml, service `worker`): `ramparts` is the entrypoint,
# `worker` the default command, so `docker run IMAGE ship -` or `... replay FILE` also work.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ramparts
ENV PATH=/opt/ramparts/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone: they change far less often than the code, so
# a code change rebuilds only the last layer instead of reinstalling chdb and friends.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt

COPY . .
RUN pip install --no-deps .


FROM python:3.11-slim

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/ramparts ramparts \
    && install -d -o ramparts -g ramparts /var/lib/ramparts/outbox /var/lib/ramparts/playbooks
# (a named volume mounted on these takes their owner, so the user can write the outbox and the
# playbooks' state there)
COPY --from=build /opt/ramparts /opt/ramparts
ENV PATH=/opt/ramparts/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

USER ramparts
# Writable: the worker keeps its local state (Faust's data dir) under the working directory.
WORKDIR /var/lib/ramparts

ENTRYPOINT ["ramparts"]
CMD ["worker"]
