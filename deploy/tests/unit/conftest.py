"""The ``service`` fixture: each service found in the code (see deploy_checks.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# deploy_checks.py sits beside this file; make it importable whichever way pytest imports the tests
# (the "prepend" mode adds this folder itself, rootdir-relative package names do not).
sys.path.insert(0, str(Path(__file__).parent))

from deploy_checks import SERVICE_IDS, SERVICES, ServiceInCode


@pytest.fixture(params=SERVICES, ids=SERVICE_IDS)
def service(request: pytest.FixtureRequest) -> ServiceInCode:
    found: ServiceInCode = request.param
    return found
