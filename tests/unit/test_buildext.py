"""feedops.buildext.ensure: the runbook builds the line encoder of a tree that lacks it (an exported revision)."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from feedops import buildext
from validate_support import ROOT


def _tree(tmp_path):
    source = tmp_path / buildext.SOURCE
    source.parent.mkdir(parents=True)
    shutil.copy(ROOT / buildext.SOURCE, source)
    return tmp_path


def test_a_tree_without_the_module_gets_one_that_imports_and_only_once(tmp_path):
    root = _tree(tmp_path)
    assert buildext.ensure(root) is True
    module = buildext.module_path(root)
    spec = importlib.util.spec_from_file_location("_jsonlines", module)
    built = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(built)
    assert built.double_text(0.5) == b"0.5"
    assert buildext.ensure(root) is False  # up to date: nothing to do
    later = module.stat().st_mtime + 10
    os.utime(root / buildext.SOURCE, (later, later))  # the source changed (another revision): built again
    assert buildext.ensure(root) is True
    assert not list(module.parent.glob(".jsonlines.*"))  # no partial file left


def test_no_compiler_is_a_clear_error_that_names_the_fix(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with pytest.raises(buildext.BuildError, match="install gcc"):
        buildext.ensure(root)
    assert not buildext.module_path(root).exists()


def test_a_compile_error_is_reported_and_leaves_nothing(tmp_path):
    root = _tree(tmp_path)
    (root / buildext.SOURCE).write_text("this is not C\n")
    with pytest.raises(buildext.BuildError, match="failed"):
        buildext.ensure(root)
    assert not list(buildext.module_path(root).parent.glob("*.so"))


def test_a_tree_from_before_the_compiled_encoder_needs_nothing(tmp_path):
    assert buildext.ensure(tmp_path) is False
