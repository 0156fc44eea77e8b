"""The repository's scripts (``experiments/*.py``) imported as modules by the tests."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(relative: str):
    """``ROOT/relative`` as a module, imported once (a dataclass in it needs ``sys.modules``)."""
    name = "jaxattr_script_" + relative.replace("/", "_").removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / relative)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
