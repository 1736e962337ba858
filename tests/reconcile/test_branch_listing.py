"""The GitHub client's branch listing: pages through Link headers, asks with ETags, works under
a GitHub Enterprise Server base URL, and never follows a link to another host."""

from __future__ import annotations

import pytest

from app.github.auth import TokenAuth
from app.github.client import BranchPage, GitHubClient
from app.github.errors import PermanentGitHubError
from tests.reconcile.conftest import sha
from tests.support.fake_github import DEFAULT_TOKEN, FakeGitHub, Reply


def test_pages_are_followed_and_asked_again_with_their_etags() -> None:
    with FakeGitHub(prefix="/api/v3") as enterprise:
        enterprise.set_branches("Octo/App", {f"b{n:03d}": sha(n) for n in range(250)})
        client = GitHubClient(enterprise.url, TokenAuth(DEFAULT_TOKEN))

        first = client.list_branches("octo/app", [])
        again = client.list_branches("octo/app", first.pages)
        enterprise.push("octo/app", "b249", sha(1, "moved"))
        moved = client.list_branches("octo/app", again.pages)

        assert first.changed
        assert len(first.heads) == 250
        assert [len(page.heads) for page in first.pages] == [100, 100, 50]
        assert not again.changed
        assert client.requests.not_modified == 3 + 2  # the second listing, then two pages
        assert moved.changed
        assert moved.heads["b249"] == sha(1, "moved")
        assert moved.pages[:2] == first.pages[:2]  # unchanged pages: 304, kept as they were
        paths = [r.path for r in enterprise.requests]
        assert all(
            path.startswith("/api/v3/repos/octo/app/branches?per_page=100") for path in paths
        )
        assert enterprise.contract_violations == []
        assert enterprise.rejections == []


def test_a_next_link_to_another_host_is_refused() -> None:
    with FakeGitHub() as fake:
        client = GitHubClient(fake.url, TokenAuth(DEFAULT_TOKEN))
        body = [
            {"name": "main", "commit": {"sha": sha(0), "url": "https://x/c"}, "protected": False}
        ]
        link = '<https://attacker.example/repos/o/r/branches?page=2>; rel="next"'
        fake.reply_next(Reply(200, {"Link": link}, body))
        fake.set_branches("o/r", {"main": sha(0)})
        with pytest.raises(PermanentGitHubError, match="outside"):
            client.list_branches("o/r", [])


def test_a_cached_page_of_another_path_is_not_reused() -> None:
    with FakeGitHub() as fake:
        fake.set_branches("o/r", {"main": sha(0)})
        client = GitHubClient(fake.url, TokenAuth(DEFAULT_TOKEN))
        stale = BranchPage("/repos/o/other/branches?per_page=100", 'W/"x"', {"gone": sha(1)}, None)
        listing = client.list_branches("o/r", [stale])
        assert listing.changed
        assert listing.heads == {"main": sha(0)}
