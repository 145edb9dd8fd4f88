"""Start olah (a Hub-compatible server, from PyPI) for the offline tests, with one answer brought in line with the Hub.

olah 0.5.4 answers a request for a file or folder that a local repository lacks with 401 "RepoNotFound"; the Hub
answers 404 "EntryNotFound", which callers treat as "not there" (transformers asks every repo it loads for
`chat_template.json` and lists `additional_chat_templates/`). Here a 401 about a repository that exists as a local
mirror becomes that 404; a repository that does not exist still gets olah's 401. Everything else is olah's own.

    python tests/olah_server.py -c olah.toml
"""

from __future__ import annotations

import os
import re

from fastapi import Request
from fastapi.responses import JSONResponse
from olah import server

# /api/models/org/repo/tree/..., /org/repo/resolve/..., /datasets/org/repo/resolve/...
_REPO_PATH = re.compile(r"^/(?:api/)?(?:(models|datasets|spaces)/)?([^/]+)/([^/]+)/(?:tree|resolve)/")


def _mirrored(path: str) -> bool:
    match = _REPO_PATH.match(path)
    if not match:
        return False
    repo_type, org, repo = match.group(1) or "models", match.group(2), match.group(3)
    mirrors = server.app.state.app_settings.config.mirrors_path
    return any(os.path.isdir(os.path.join(root, repo_type, org, repo)) for root in mirrors)


@server.app.middleware("http")
async def missing_entry_is_not_a_missing_repo(request: Request, call_next):
    response = await call_next(request)
    if response.status_code == 401 and _mirrored(request.url.path):
        message = "Entry not found"
        headers = {"x-error-code": "EntryNotFound", "x-error-message": message}
        return JSONResponse({"error": message}, status_code=404, headers=headers)
    return response


if __name__ == "__main__":
    server.main()
