"""Each service's code imports only what its image installs: every module of the service is imported
in a fresh interpreter where a distribution outside the service's declared dependencies (what its
image lock holds, test_supply_chain.py) cannot be imported, as in the image. The dev venv has every
service's dependencies at once, so a dependency one service uses but does not declare (the console's
session cookies need ``cryptography``) works there and fails only in the image, at start."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from deploy_checks import REPO, ServiceInCode
from test_supply_chain import local_distribution, needed

# Runs in the child: block every top-level module whose distributions are all outside the allowed set.
_CHILD = r"""
import importlib, importlib.abc, importlib.metadata, pkgutil, re, sys

package, allowed = sys.argv[1], set(sys.argv[2].split(","))
owners = importlib.metadata.packages_distributions()


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = {canonical(d) for d in owners.get(top, [])}
        if dists and not dists & allowed:
            raise ModuleNotFoundError(f"No module named {name!r} in the image (from {sorted(dists)})", name=name)
        return None


sys.meta_path.insert(0, NotInTheImage())
root = importlib.import_module(package)
for module in pkgutil.walk_packages(root.__path__, package + "."):
    importlib.import_module(module.name)
"""


def test_service_imports_only_what_its_image_installs(service: ServiceInCode) -> None:
    folder = REPO / "services" / service.folder
    script = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["scripts"][service.script]
    package = script.split(":")[0].removesuffix(".__main__")
    allowed = needed([local_distribution(folder)])
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, package, ",".join(sorted(allowed))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, (
        f"{service.script} imports what its image does not install (declare it in "
        f"services/{service.folder}/pyproject.toml, then ./dev lock-images):\n{result.stderr[-2000:]}"
    )
