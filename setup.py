"""Package layout (everything else is in pyproject.toml).

The four domain folders stay at the top of the checkout (``tracker/``, ``estimators/``, ``association/``,
``evaluation/``) but install under the ``posetracker`` namespace (``posetracker.tracker``, ...), so no
generic top-level names reach site-packages.
"""

from setuptools import find_packages, setup

DOMAIN = ("tracker", "estimators", "association", "evaluation")

packages = find_packages(include=["posetracker", "posetracker.*"])
package_dir = {"posetracker": "posetracker"}
for folder in DOMAIN:
    packages += [f"posetracker.{p}" for p in find_packages(include=[folder, f"{folder}.*"])]
    package_dir[f"posetracker.{folder}"] = folder

setup(packages=packages, package_dir=package_dir)
