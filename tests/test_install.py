"""What scripts/install sets up: the interpreter the tests (and the daemons) run on."""

import os
import subprocess
import sys

import pytest

SYSTEM = "/usr/bin/python3"


@pytest.mark.skipif(bool(os.environ.get("PYTHON")), reason="PYTHON chose the interpreter")
def test_the_venv_is_made_on_the_system_interpreter():
    # Debian's optimised build, the one python3-dev and python3-venv are for, even
    # when another python3 (an unoptimised pyenv build, say) comes first on PATH.
    # (Checked here, not at collection: a subprocess for one test.)
    if not os.access(SYSTEM, os.X_OK) or subprocess.run(
            [SYSTEM, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"],
            timeout=30).returncode != 0:
        pytest.skip(f"no {SYSTEM} of 3.11 or later")
    assert os.path.realpath(sys._base_executable) == os.path.realpath(SYSTEM)
