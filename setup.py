"""Build the sandbox's C core and its Cython binding (metadata: pyproject.toml).

CFLAGS for the core can be added with SBX_CFLAGS (e.g. "-O0 -g -fsanitize=address").
"""

import glob
import os
import shlex
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup


def libseccomp_flags() -> tuple[list[str], list[str]]:
    try:
        cflags = subprocess.check_output(["pkg-config", "--cflags", "libseccomp"], text=True)
        libs = subprocess.check_output(["pkg-config", "--libs", "libseccomp"], text=True)
    except (OSError, subprocess.CalledProcessError):
        if os.path.exists("/usr/include/seccomp.h"):
            return [], ["-lseccomp"]
        raise RuntimeError(
            "libseccomp's development files were not found. Install them first: "
            "`apt-get install libseccomp-dev pkg-config` (Debian/Ubuntu) or "
            "`dnf install libseccomp-devel pkgconf` (Fedora/RHEL)."
        ) from None
    return shlex.split(cflags), shlex.split(libs)


seccomp_cflags, seccomp_libs = libseccomp_flags()
core = Extension(
    "sandbox._core",
    sources=["sandbox/_core.pyx"] + sorted(glob.glob("csrc/*.c")),
    include_dirs=["csrc"],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=[
        "-std=gnu11",
        "-Wall",
        "-Wextra",
        *seccomp_cflags,
        *shlex.split(os.environ.get("SBX_CFLAGS", "")),
    ],
    # SBX_CFLAGS reach the link too: a sanitizer needs its runtime there.
    extra_link_args=[*seccomp_libs, "-lm", *shlex.split(os.environ.get("SBX_CFLAGS", ""))],
)

setup(ext_modules=cythonize([core], compiler_directives={"language_level": "3"}))
