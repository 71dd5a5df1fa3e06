"""The one dynamic piece of packaging: the source folders machine/, guest/, cli/, client/ and dashboard/ install as
skiffbox.machine, .guest, .cli, .client and .dashboard under the `skiffbox` namespace package, so the
distribution owns one import name and never collides with other projects' `machine` or `guest`."""

from setuptools import find_packages, setup

TOPS = ("machine", "guest", "cli", "dashboard", "client")
packages = [f"skiffbox.{top}{'.' + sub if sub else ''}"
            for top in TOPS for sub in ["", *find_packages(top)]]
setup(packages=packages, package_dir={f"skiffbox.{top}": top for top in TOPS})
