"""Fixtures shared by the end-to-end tests: real origin servers (plain and TLS) and
the test PKI, one per test module."""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.certs import OriginPKI, make_test_pki
from tests.harness import Origin, start_origin

# Hypothesis keeps its files (example database, caches) out of the checkout.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "postcap-hypothesis"))
settings.register_profile("postcap", database=None)
settings.load_profile("postcap")


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    """A plain-HTTP ``tests/origin.py`` on 127.0.0.1, for the whole module."""
    with start_origin() as running:
        yield running


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> OriginPKI:
    """Test certificates: an origin CA, and good/expired/wrong-host/… server certificates."""
    return make_test_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def tls_origin(pki: OriginPKI) -> Iterator[Origin]:
    """The origin over TLS with the good certificate (trust ``pki.ca_cert``)."""
    with start_origin(tls=(pki.good.cert, pki.good.key)) as running:
        yield running
