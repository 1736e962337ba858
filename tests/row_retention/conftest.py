import pytest

pytest.register_assert_rewrite("tests.support.factories")

from tests.support.factories import make_build, make_push  # noqa: E402, F401 (fixtures)
