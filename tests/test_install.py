"""What scripts/install sets up: the interpreter the tests (and the daemons) run on."""

import os
import subprocess
import sys

import pytest

SYSTEM = "/usr/bin/python3"


def system_python_ok() -> bool:
    if not os.access(SYSTEM, os.X_OK):
        return False
    done = subprocess.run([SYSTEM, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"],
                          timeout=30)
    return done.returncode == 0


@pytest.mark.skipif(bool(os.environ.get("PYTHON")), reason="PYTHON chose the interpreter")
@pytest.mark.skipif(not system_python_ok(), reason=f"no {SYSTEM} of 3.11 or later")
def test_the_venv_is_made_on_the_system_interpreter():
    # Debian's optimised build, the one python3-dev and python3-venv are for, even
    # when another python3 (an unoptimised pyenv build, say) comes first on PATH.
    assert os.path.realpath(sys._base_executable) == os.path.realpath(SYSTEM)
