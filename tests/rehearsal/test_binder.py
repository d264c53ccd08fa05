"""binder_rehearsal.py: the pod is built with the Python binder/runtime.txt names, or not at all, saying why.
(The whole rehearsal, a pod used in Chromium: test_binder_pod.py.)"""

from __future__ import annotations

import pytest

from rehearsal.binder import PodSetupError, runtime_python


# Slow with the rest of the pod's tests: its last line needs the interpreter a pod build needs.
@pytest.mark.slow
def test_runtime_txt_naming_a_python_this_machine_lacks_stops_the_build_saying_so(tmp_path):
    runtime = tmp_path / "runtime.txt"
    runtime.write_text("python-3.99\n")
    with pytest.raises(PodSetupError, match=r"asks for Python 3\.99 .*no python3\.99 .*apt-get install python3\.99"):
        runtime_python(runtime)
    runtime.write_text("python3.11\n")  # no dash: repo2docker would not read it either
    with pytest.raises(PodSetupError, match=r"says 'python3\.11'; repo2docker reads a Python version as python-3\.X"):
        runtime_python(runtime)
    assert runtime_python()  # the repository's own binder/runtime.txt names one this machine has
