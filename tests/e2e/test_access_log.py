"""What gunicorn's access log keeps of a request: never a secret that is part of its path."""

from __future__ import annotations

import time
from urllib.parse import urlsplit


def test_an_embed_links_token_never_reaches_the_access_log(web_server, make_live_tenant):
    tenant = make_live_tenant()
    admin = tenant.users["admin"]["token"]
    status, body = web_server.request(
        "POST", "/api/v1/embed-tokens", admin, {"view": "overview", "expires_in": 3600}
    )
    assert status == 201, body
    path = urlsplit(body["url"]).path
    token = path.rstrip("/").rsplit("/", 1)[-1]
    assert len(token) > 40, path

    status, answer = web_server.request("GET", f"{path}/api/dashboard?period=7d")
    assert status == 200, answer
    status, _ = web_server.request("GET", f"{path}x/api/dashboard?period=7d")
    assert status == 403
    time.sleep(0.3)
    log = web_server.log_text()
    assert '"GET /embed/[redacted]/api/dashboard HTTP/1.1" 200' in log
    assert '"GET /embed/[redacted]/api/dashboard HTTP/1.1" 403' in log
    assert token not in log
    assert token[:20] not in log
