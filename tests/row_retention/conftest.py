from tests.support.factories import make_build, make_push  # noqa: F401 (fixtures)
