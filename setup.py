"""The one build step pyproject.toml cannot say: Uppy's browser files, taken from the npm
package at build time, go into the package as `tus_server/vendor/uppy/` (what the app serves
at /vendor/uppy/), with Uppy's licence.

Where they come from: `node_modules/uppy` of the checkout (`npm ci`, run by `make setup`); in
an unpacked sdist, the copy the sdist was made with. An editable install (`make setup`) copies
nothing: the app then serves the checkout's node_modules (see `default_uppy_dist`).
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR = os.path.join("tus_server", "vendor", "uppy")
# The bundle the page imports and its stylesheet (their source maps stay out: 4 MB for a
# browser's developer tools only).
SERVED = ("uppy.min.mjs", "uppy.min.css")


def uppy_files() -> dict:
    """{name in VENDOR: source path}."""
    npm = os.path.join(HERE, "node_modules", "uppy")
    if os.path.isfile(os.path.join(npm, "dist", SERVED[0])):
        files = {name: os.path.join(npm, "dist", name) for name in SERVED}
        files["LICENSE"] = os.path.join(npm, "LICENSE")
    else:
        files = {name: os.path.join(HERE, VENDOR, name) for name in SERVED + ("LICENSE",)}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f"Uppy's files are missing ({', '.join(missing)}): run `npm ci` "
                         "(or `make setup`) in the checkout before building")
    return files


def copy_uppy(root: str) -> None:
    target = os.path.join(root, VENDOR)
    os.makedirs(target, exist_ok=True)
    for name, source in uppy_files().items():
        if os.path.abspath(source) != os.path.abspath(os.path.join(target, name)):
            shutil.copyfile(source, os.path.join(target, name))


class BuildPyWithUppy(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            copy_uppy(self.build_lib)


class SdistWithUppy(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        copy_uppy(base_dir)


setup(cmdclass={"build_py": BuildPyWithUppy, "sdist": SdistWithUppy})
