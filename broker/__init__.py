"""dmdt-broker: streaming dmdt-image CNN classifier for astronomical alert streams."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dmdt-broker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"
