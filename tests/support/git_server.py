"""Real git repositories served over smart HTTP (`git http-backend`) behind a token check, the
way GitHub serves private repositories: Basic auth whose password is the token."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Octo",
    "GIT_AUTHOR_EMAIL": "octo@example.com",
    "GIT_COMMITTER_NAME": "Octo",
    "GIT_COMMITTER_EMAIL": "octo@example.com",
}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@dataclass
class GitServer:
    """Bare repositories under `root`, served at `url`; every request must carry `token`."""

    root: Path
    url: str
    token: str
    # Authorization headers of every request, to check what the client sent.
    seen_authorization: list[str] = field(default_factory=list)

    def clone_url(self, full_name: str) -> str:
        return f"{self.url}/{full_name}.git"

    def commit(
        self,
        full_name: str,
        files: dict[str, str | bytes],
        *,
        executable: tuple[str, ...] = (),
        symlinks: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
        branch: str = "main",
        message: str = "Change things",
    ) -> str:
        """Commits `files` (path -> content) and `symlinks` (path -> link target) on top of
        `branch` and returns the new SHA."""
        bare = self.root / f"{full_name}.git"
        if not bare.exists():
            bare.parent.mkdir(parents=True, exist_ok=True)
            git("init", "-q", "--bare", "-b", branch, str(bare), cwd=self.root)
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            git("init", "-q", "-b", branch, cwd=work)
            git("remote", "add", "origin", str(bare), cwd=work)
            if git("ls-remote", "origin", f"refs/heads/{branch}", cwd=work):
                git("fetch", "-q", "origin", branch, cwd=work)
                git("checkout", "-q", "-B", branch, "FETCH_HEAD", cwd=work)
            for path, content in files.items():
                target = work / path
                target.parent.mkdir(parents=True, exist_ok=True)
                data = content.encode() if isinstance(content, str) else content
                target.write_bytes(data)
                target.chmod(0o755 if path in executable else 0o644)
            for path, target in (symlinks or {}).items():
                link = work / path
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(target)
            for path in remove:
                git("rm", "-q", "-r", path, cwd=work)
            git("add", "-A", cwd=work)
            git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
            git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
            return git("rev-parse", "HEAD", cwd=work)


def _handler(server: GitServer) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"x-access-token:{server.token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            authorization = self.headers.get("Authorization", "")
            server.seen_authorization.append(authorization)
            if authorization != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "x-access-token",
                "REMOTE_ADDR": self.client_address[0],
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            result = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def serve_git(root: Path, token: str) -> Iterator[GitServer]:
    root.mkdir(parents=True, exist_ok=True)
    placeholder = GitServer(root=root, url="", token=token)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(placeholder))
    placeholder.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield placeholder
    finally:
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(root, ignore_errors=True)
