"""The retention rules, one at a time: what keeps an image, and that nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.retention.policy import ImageFacts, PushFacts, RetentionPolicy, evaluate

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=90)
POLICY = RetentionPolicy(keep_last=2, keep_days=30, keep_pulled_days=7, deleted_branch_days=14)


def _image(n: int, *, created: datetime = OLD, **facts: object) -> ImageFacts:
    values: dict[str, object] = {
        "image_id": n,
        "build_id": n,
        "name": "octo-app",
        "tag": f"{n:040x}",
        "manifest_digest": f"sha256:{n:064x}",
        "created_at": created,
        "pinned": False,
        "last_pulled_at": None,
    }
    values.update(facts)
    return ImageFacts(**values)  # type: ignore[arg-type]


def _push(
    n: int, branch: str, build: int | None, *, green: bool = True, **facts: object
) -> PushFacts:
    values: dict[str, object] = {"deleted": False, "received_at": OLD}
    values.update(facts)
    return PushFacts(n, branch, build_id=build, green=green, **values)  # type: ignore[arg-type]


def _kept(verdicts: list) -> dict[int, list[str]]:  # type: ignore[type-arg]
    return {v.image.image_id: v.kept_by for v in verdicts}


def test_old_history_beyond_the_last_n_goes_and_each_kept_image_says_why() -> None:
    images = [_image(n) for n in range(1, 6)]
    pushes = [_push(n, "main", n) for n in range(1, 6)]
    kept = _kept(evaluate(images, pushes, POLICY, NOW))
    assert kept[5] == [
        "latest green of main",
        "among the last 2 of main",
        "the repository's newest image",
    ]
    assert kept[4] == ["among the last 2 of main"]
    assert kept[1] == kept[2] == kept[3] == []


def test_pinned_young_and_recently_pulled_images_are_kept() -> None:
    images = [
        _image(1, pinned=True),
        _image(2, created=NOW - timedelta(days=3)),
        _image(3, last_pulled_at=NOW - timedelta(days=1)),
        _image(4, last_pulled_at=NOW - timedelta(days=8)),
        _image(5),
        _image(6),
        _image(7),
    ]
    pushes = [_push(n, "main", n) for n in range(1, 8)]
    kept = _kept(evaluate(images, pushes, POLICY, NOW))
    assert kept[1] == ["pinned"]
    assert kept[2] == ["younger than 30 days"]
    assert kept[3] == ["pulled in the last 7 days"]
    assert kept[4] == kept[5] == []


def test_a_failed_head_keeps_the_last_green_and_other_branches_keep_theirs() -> None:
    images = [_image(n) for n in (1, 2, 3, 4, 5)]
    pushes = [
        _push(1, "main", 1),
        _push(2, "feature", 2),
        _push(3, "main", 3),
        _push(4, "main", 4, green=False),  # failed: no image would exist, but say it did
        _push(5, "main", 5, green=False),
    ]
    kept = _kept(evaluate(images, pushes, POLICY, NOW))
    assert "latest green of main" in kept[3]
    assert kept[2] == ["latest green of feature", "among the last 2 of feature"]
    assert kept[1] == []


def test_a_deleted_branch_keeps_its_latest_green_for_a_while_only() -> None:
    images = [_image(1), _image(2), _image(3)]
    recent = [
        _push(1, "feature", 1),
        _push(2, "feature", 2),
        _push(3, "feature", None, deleted=True, received_at=NOW - timedelta(days=3)),
        _push(4, "main", 3),
    ]
    kept = _kept(evaluate(images, recent, POLICY, NOW))
    assert kept[2] == ["latest green of feature, deleted less than 14 days ago"]
    assert kept[1] == []

    long_ago = [*recent[:2], _push(3, "feature", None, deleted=True), recent[3]]
    kept = _kept(evaluate(images, long_ago, POLICY, NOW))
    assert kept[1] == kept[2] == []


def test_the_repository_never_loses_its_last_image() -> None:
    [verdict] = evaluate([_image(1)], [], POLICY, NOW)
    assert verdict.kept_by == ["the repository's newest image"]


def test_repository_overrides_replace_the_installation_policy() -> None:
    from app.config import Settings

    policy = RetentionPolicy.of(Settings(), {"keep_last": 50, "unknown": 3})
    assert (policy.keep_last, policy.keep_days) == (50, 30)
