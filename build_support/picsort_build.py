"""The build backend (pyproject.toml): setuptools, with the data files put into editable installs too.

setuptools writes `[tool.setuptools.data-files]` into a regular wheel but leaves them out of the editable one
`pip install -e .` builds: it asks the distribution `has_data()`, a method it never defines, where it means
`has_data_files()` (pypa/setuptools#3399). Without them Voila, which finds page templates only in Jupyter's data
folders (<venv>/share/jupyter), would not find the offline template voila.json names for `voila app.ipynb`.
"""

from setuptools.build_meta import *  # noqa: F403 - setuptools does all the building
from setuptools.dist import Distribution

if not hasattr(Distribution, "has_data"):
    Distribution.has_data = Distribution.has_data_files
