from tests.support.factories import (  # noqa: F401 (fixtures)
    make_build,
    make_image,
    make_push,
    reads_need_token,
)
