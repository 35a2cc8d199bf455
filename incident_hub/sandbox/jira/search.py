"""Issue search: `/rest/api/3/search/jql` (JQL, `nextPageToken` paging, eventually consistent) and the
legacy `/rest/api/3/search`, which Jira Cloud has removed."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from incident_hub.sandbox.jira import jql
from incident_hub.sandbox.jira.api import base_url, basic_auth, field_names, json_body
from incident_hub.sandbox.jira.model import Issue, JiraError, JiraState, User
from incident_hub.sandbox.jira.render import View, issue_json

# What the legacy search answers since Atlassian removed it (CHANGE-2046); the spec still lists it, as
# deprecated: paths./rest/api/3/search.get.deprecated in jira-cloud-platform-rest-v3.swagger-v3.v3.json.
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration "
    "guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)


def search_router(state: JiraState) -> APIRouter:
    router = APIRouter(prefix="/rest/api/3", tags=["Jira REST v3"])
    signed_in = Depends(basic_auth(state))

    @router.get("/search/jql")
    async def search(
        request: Request,
        jql_query: Annotated[str, Query(alias="jql")] = "",
        nextPageToken: str | None = None,
        maxResults: int = 50,
        fields: Annotated[list[str] | None, Query()] = None,
        expand: str = "",
        properties: Annotated[list[str] | None, Query()] = None,
        reconcileIssues: Annotated[list[int] | None, Query()] = None,
        user: User = signed_in,
    ) -> dict[str, Any]:
        return _search(
            request,
            user,
            jql_query,
            nextPageToken,
            maxResults,
            field_names(fields),
            expand,
            properties,
            reconcileIssues,
        )

    @router.post("/search/jql")
    async def search_post(request: Request, user: User = signed_in) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise JiraError(400, ["Can not deserialize the request body."])
        return _search(
            request,
            user,
            str(body.get("jql") or ""),
            body.get("nextPageToken"),
            int(body.get("maxResults") or 50),
            field_names(body.get("fields")),
            str(body.get("expand") or ""),
            body.get("properties"),
            body.get("reconcileIssues"),
        )

    def _search(
        request: Request,
        user: User,
        text: str,
        token: str | None,
        page_size: int,
        fields: list[str],
        expand: str,
        properties: list[str] | None,
        reconcile: list[int] | None,
    ) -> dict[str, Any]:
        fields = fields or ["id"]
        ids_only = set(fields) <= {"id", "key"}
        # "The greatest number of items returned per page is achieved when requesting id or key only. It
        # returns max 5000 issues." (spec, /rest/api/3/search/jql maxResults); 100 once fields are asked.
        page_size = max(1, min(page_size, 5000 if ids_only else 100))
        start = _page_start(token)
        with state.lock:
            query = jql.parse(text, state, user)
            settled = state.now() - timedelta(seconds=state.search_lag_seconds)
            visible = [
                i for i in state.issues.values() if i.updated <= settled or int(i.id) in (reconcile or [])
            ]
            found = query.sort([i for i in visible if query.matches(i)])
            page = found[start : start + page_size]
            shown = [_search_hit(i, fields, expand, properties, request, user) for i in page]
        answer: dict[str, Any] = {"issues": shown, "isLast": start + page_size >= len(found)}
        if not answer["isLast"]:
            answer["nextPageToken"] = base64.urlsafe_b64encode(f"{start + page_size}".encode()).decode()
        return answer

    def _search_hit(
        issue: Issue,
        fields: list[str],
        expand: str,
        properties: list[str] | None,
        request: Request,
        user: User,
    ) -> dict[str, Any]:
        if fields == ["id"] and not properties and not expand:
            return {"id": issue.id}
        return issue_json(
            issue,
            state,
            View(base_url(request), "3", user.zone),
            fields=fields,
            expand=expand,
            properties=properties,
        )

    @router.get("/search")
    @router.post("/search")
    async def removed_search(user: User = signed_in) -> dict[str, Any]:
        raise JiraError(410, [SEARCH_REMOVED])

    return router


def _page_start(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error) as error:
        raise JiraError(400, ["The provided next page token is invalid or expired."]) from error
