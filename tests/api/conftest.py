import pytest

# tests/test_cli.py loads the same fixtures as a plugin; rewrite its asserts on first import.
pytest.register_assert_rewrite("tests.support.factories")

from tests.support.factories import (  # noqa: E402, F401 (fixtures)
    make_build,
    make_image,
    make_push,
    reads_need_token,
)
