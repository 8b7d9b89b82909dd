"""Shared fixtures: a real `weightyard serve` on a free loopback port, and clients pointed at it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest
from tests import support
from tests.postgres import TEMPLATE, PostgresCluster
from tests.s3 import SeaweedServer, credentials_env, fresh_prefix, start_seaweed
from tests.support import Server, start_server, stop_server


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With several test processes (`make test` runs two), each test folder runs whole in one process, in
    the order a single process runs it: the modules of a folder share session fixtures (tests/auth's team
    of users and orgs, for one), and some of their tests read what the folder's earlier modules left."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFolder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "/".join(nodeid.split("::", 1)[0].split("/")[:2])

    return ByFolder(config, log)  # type: ignore[arg-type]


# `make test` runs the `client`-marked tests a second time with the 1.x client first on PYTHONPATH and this
# variable naming the generation: a run that silently imported another client must fail, not pass.
GENERATION_VARIABLE = "WEIGHTYARD_TEST_HF_GENERATION"

# Hermetic client caches: the stock client (and hf_xet) read HF_HOME when they are imported, so it is set
# here, before any test module imports them, and every server and client subprocess inherits it. Without
# this, the suite filled the real ~/.cache/huggingface of whoever ran it.
_CLIENT_HOME = tempfile.mkdtemp(prefix="weightyard-test-hf-home-")
os.environ["HF_HOME"] = _CLIENT_HOME
for _variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH"):
    os.environ.pop(_variable, None)
atexit.register(shutil.rmtree, _CLIENT_HOME, True)


@pytest.fixture(scope="session", autouse=True)
def stock_client_generation() -> str:
    """The major version of the `huggingface_hub` the clients import, checked against the one requested."""
    import huggingface_hub

    imported = huggingface_hub.__version__.split(".", 1)[0]
    requested = os.environ.get(GENERATION_VARIABLE)
    if requested is not None and requested != imported:
        pytest.exit(
            f"{GENERATION_VARIABLE}={requested} but huggingface_hub {huggingface_hub.__version__}"
            f" was imported from {huggingface_hub.__file__}",
            returncode=3,
        )
    return imported


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One hub for the session, in its default configuration."""
    instance = start_server(tmp_path_factory.mktemp("hub") / "data")
    yield instance
    stop_server(instance)


@pytest.fixture(scope="session")
def lfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A hub that sends every binary or >=1 MiB file through the LFS batch API, in 1 MiB parts."""
    instance = start_server(
        tmp_path_factory.mktemp("lfs-hub") / "data",
        env={
            "WEIGHTYARD_LFS_UPLOADS": "always",
            "WEIGHTYARD_LFS_THRESHOLD": str(1024 * 1024),
            "WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(1024 * 1024),
        },
    )
    yield instance
    stop_server(instance)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session, holding a template database migrated once to the head."""
    from weightyard.db import create_engine, migrate

    cluster = PostgresCluster()
    try:
        cluster.start()
        engine = create_engine(cluster.create_database(TEMPLATE))
        try:
            migrate(engine)
        finally:
            engine.dispose()  # a template with a connection open cannot be copied
        yield cluster
    finally:
        cluster.stop()


_databases = 0


def _fresh_database(cluster: PostgresCluster) -> str:
    global _databases
    _databases += 1
    return cluster.create_database(f"weightyard_{_databases}", template=TEMPLATE)


@pytest.fixture(scope="module")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh migrated PostgreSQL database for the test module: the URL `WEIGHTYARD_DATABASE_URL` takes."""
    return _fresh_database(postgres_cluster)


@pytest.fixture
def fresh_postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh migrated PostgreSQL database for one test (for tests that count every row of a table)."""
    return _fresh_database(postgres_cluster)


# `make test` runs the repository, access and Xet tests a second time with this variable set to `postgresql`:
# every hub the tests start (and every CLI call naming its data folder) then works on its own PostgreSQL
# database instead of the SQLite file in the folder.
DATABASE_VARIABLE = "WEIGHTYARD_TEST_DATABASE"


@pytest.fixture(scope="session", autouse=True)
def test_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database the test hubs run on: `sqlite` (the default) or `postgresql`."""
    kind = os.environ.get(DATABASE_VARIABLE, "sqlite")
    if kind not in ("sqlite", "postgresql"):
        pytest.exit(f"{DATABASE_VARIABLE} is {kind!r}; expected sqlite or postgresql", returncode=3)
    if kind == "sqlite":
        yield kind
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    support.new_database = lambda: _fresh_database(cluster)
    try:
        yield kind
    finally:
        support.new_database = None


_counter = 0


@pytest.fixture
def repo_name() -> str:
    """A fresh repo name per test (tests share the session server)."""
    global _counter
    _counter += 1
    return f"admin/t{os.getpid()}-{_counter}-{time.time_ns() % 1_000_000}"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """SeaweedFS (`weed mini`) for the session, on loopback, with one bucket; tests use their own prefixes."""
    instance = start_seaweed()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def s3_url(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A `WEIGHTYARD_BLOB_URL` of a prefix of its own in the session's SeaweedFS bucket, with credentials."""
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    return seaweed.url(fresh_prefix())


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 emulator on loopback (it does not validate checksums: for error paths only)."""
    from moto.server import ThreadedMotoServer

    instance = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    instance.start()
    try:
        host, port = instance.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        instance.stop()
