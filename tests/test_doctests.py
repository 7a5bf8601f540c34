"""Every example in the docstrings of edgevision and of benchmarks/ runs and prints what it shows.

Examples that need a model, a camera or a server are marked ``# doctest: +SKIP`` in place.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import edgevision
from conftest import BENCHMARKS, load_benchmark

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(edgevision.__path__, "edgevision.") if m.name != "edgevision.__main__"
)
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


def run_examples(module) -> doctest.TestResults:
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(module, module.__name__):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    results = run_examples(importlib.import_module(name))
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed (output above)"


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_examples(name):
    results = run_examples(load_benchmark(name))
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in benchmarks/{name}.py failed"


def test_the_examples_are_found():
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name), name))
    assert found >= 200, found  # 208 run when this was written; a finder that sees none fails here
