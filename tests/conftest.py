"""Fixtures: one rendering per preset, shared by the whole session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from maintainer.render import load_answers, preset_names, render

os.environ.setdefault("CONDOR_CONFIG", os.devnull)
PRESETS = preset_names()


@pytest.fixture(scope="session")
def renderings(tmp_path_factory) -> dict[str, Path]:
    """Each preset rendered once (rendering is read-only for the tests that share it)."""
    root = tmp_path_factory.mktemp("renderings")
    return {name: render(root / name, load_answers(name)) for name in PRESETS}


@pytest.fixture
def copy_of(renderings, tmp_path):
    """A private copy of a preset's rendering, for tests that break files."""

    def make(preset: str) -> Path:
        target = tmp_path / preset
        shutil.copytree(renderings[preset], target, symlinks=True)
        return target

    return make
