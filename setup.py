"""Packaging beyond pyproject.toml: which packages a wheel holds.

Besides ``scrub`` and its subpackages (found, so a new one is never left out), the wheel carries
the top-level ``migrations/`` and ``policies/`` as ``scrub._migrations`` and ``scrub._policies``:
one copy in git, read as package data once installed (``scrub/shipped.py``).
"""

from setuptools import find_packages, setup

SHIPPED = {
    "scrub._migrations": "migrations",
    "scrub._migrations.versions": "migrations/versions",
    "scrub._policies": "policies",
}

setup(
    packages=[*find_packages(include=["scrub", "scrub.*"]), *SHIPPED],
    package_dir=SHIPPED,
    package_data={"scrub": ["templates/*.j2", "templates/web/*.j2", "templates/web/*.css"],
                  "scrub._migrations": ["script.py.mako", "README.md"],
                  "scrub._policies": ["*.toml", "*.txt", "README.md"]},
)
