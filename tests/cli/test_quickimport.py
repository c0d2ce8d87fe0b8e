"""The daemon's trio and pyfuse3 imports without their side trips (cli/quickimport)."""

from __future__ import annotations

import subprocess
import sys

# Run in a fresh interpreter: trio and pyfuse3 are imported once per process.
CHECK = """
import subprocess, sys
def no_subprocess(*a, **k):
    raise AssertionError(f"a subprocess at import: {a}")
subprocess.Popen = no_subprocess
from torrentfs.cli.quickimport import import_trio_pyfuse3
import_trio_pyfuse3()
import ctypes.util, importlib, pyfuse3, trio
from trio._core._thread_cache import set_os_thread_name
print(set_os_thread_name is not None, pyfuse3.__version__,
      "importlib.metadata" in sys.modules, hasattr(importlib, "metadata"),
      ctypes.util.find_library.__module__)
"""


def fresh_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (which must succeed)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_trio_and_pyfuse3_import_with_no_subprocess_and_no_distribution_scan():
    stdout = fresh_python(CHECK)
    # trio still names its threads; pyfuse3 says "unknown" (its version is not looked
    # up); the stand-in and the patched lookup are gone once the imports are over.
    assert stdout.split() == ["True", "unknown", "False", "False", "ctypes.util"]


def test_the_real_metadata_module_works_afterwards():
    code = ("from torrentfs.cli.quickimport import import_trio_pyfuse3\n"
            "import_trio_pyfuse3()\n"
            "import importlib.metadata\n"
            "print(importlib.metadata.version('trio'))")
    stdout = fresh_python(code)
    import trio
    assert stdout.strip() == trio.__version__


def test_a_metadata_module_imported_before_is_left_alone():
    code = ("import importlib.metadata as m\n"
            "from torrentfs.cli.quickimport import import_trio_pyfuse3\n"
            "import_trio_pyfuse3()\n"
            "import sys, pyfuse3\n"
            "print(sys.modules['importlib.metadata'] is m, pyfuse3.__version__ != 'unknown')")
    stdout = fresh_python(code)
    assert stdout.split() == ["True", "True"]
