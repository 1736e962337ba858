"""The parts of the proxy's nginx config that differ when registry auth is on.

Off: anyone may pull, the proxy answers the version check itself and a blob is cached once for
every repository. On: every `/v2/` request first asks Cartridge (`auth_request` to
`/auth/proxy`, before the cache is consulted, since nginx's cache would otherwise serve a cached
blob to anyone); a yes is cached briefly per credential and repository, so a herd of pullers
costs about one check; the pull token Cartridge answers with is what nginx sends the replica; a
no is a 401 carrying Cartridge's Bearer challenge (the Docker engine only sends credentials after
one); and the repository is part of a blob's cache key, so a digest cached for one repository is
never served through another.
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings

AUTH_KEYS_ZONE_SIZE = "8m"

OFF = {
    "auth_http": "",
    "auth_server": "",
    "auth_locations": "",
    "auth_off": "",
    "blob_cache_key": "blob $digest",
    "blob_key_scope": "shared across repositories",
    "version_check": """\
        # The version check every pull starts with. The proxy asks for no credentials, so it
        # answers itself: pulls from the cache keep working while every replica is down.
        location = /v2/ {
            return 200 '{}';
        }""",
}

AUTH_HTTP = """\
    # The repository a request is about, for the auth answers' cache key. $request_uri is the
    # client's request line in the auth subrequest too.
    map $request_uri $pull_repository {{
        "~^/v2/(?<name>.+)/(?:manifests/[^/?]+|blobs/[^/?]+|tags/list)(?:\\?.*)?$" $name;
        default "";
    }}
    proxy_cache_path {auth_cache_path} levels=1:2 keys_zone=cartridge_auth:{zone}
                     max_size=64m inactive=10m use_temp_path=off;
"""

AUTH_SERVER = """\
        # Every request is checked by Cartridge before the cache is looked at; the replica gets
        # the pull token Cartridge answered with, never the client's credentials.
        auth_request /_cartridge_auth;
        auth_request_set $registry_token $upstream_http_x_registry_token;
        proxy_set_header Authorization "Bearer $registry_token";
"""

AUTH_LOCATIONS = """\
        # Cartridge's answer, cached per credential and repository (yes only, and briefly: a
        # revoked token pulls for at most that long); concurrent checks are collapsed into one.
        location = /_cartridge_auth {{
            internal;
            auth_request off;
            proxy_pass {auth_url}/auth/proxy;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header Authorization $http_authorization;
            proxy_set_header Host {auth_host};
            proxy_cache cartridge_auth;
            proxy_cache_key "$http_authorization $pull_repository";
            proxy_cache_valid 200 {auth_cache_valid};
            proxy_cache_lock on;
            # Cartridge unreachable: a yes given in the last ten minutes still stands.
            proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
        }}

        # Reached after the access check (a `return` would answer before it).
        location @version_check {{
            return 200 '{{}}';
        }}
"""

VERSION_CHECK = """\
        # The version check every pull starts with: 200 once Cartridge accepts the credentials,
        # otherwise the 401 challenge that makes clients log in.
        location = /v2/ {
            try_files /.cartridge-no-such-file @version_check;
        }"""


def auth_values(settings: Settings, runtime_dir: Path) -> dict[str, str]:
    if not settings.registry_auth_enabled:
        return dict(OFF)
    auth_url = (settings.proxy_auth_url or settings.public_url).rstrip("/")
    auth_host = auth_url.split("://", 1)[-1].split("/", 1)[0]
    return {
        "auth_http": AUTH_HTTP.format(
            auth_cache_path=runtime_dir / "auth-cache", zone=AUTH_KEYS_ZONE_SIZE
        ),
        "auth_server": AUTH_SERVER,
        "auth_locations": AUTH_LOCATIONS.format(
            auth_url=auth_url,
            auth_host=auth_host,
            auth_cache_valid=f"{settings.proxy_auth_cache_seconds}s",
        ),
        "auth_off": "            auth_request off;\n",
        "blob_cache_key": "blob $repo $digest",
        "blob_key_scope": "per repository: who may read one may not read another",
        "version_check": VERSION_CHECK,
    }
