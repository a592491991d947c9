"""Views for the Django test client: a cache_page view, a session counter, a fragment."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.urls import path
from django.views.decorators.cache import cache_page

CALLS = {"page": 0, "fragment": 0, "search": 0}


@cache_page(60)
def page(request: HttpRequest) -> HttpResponse:
    """A cached page that counts how often it really runs."""
    CALLS["page"] += 1
    response = HttpResponse(f"page {CALLS['page']}", content_type="text/plain")
    response["X-Extra"] = "yes"
    return response


@cache_page(60)
def search(request: HttpRequest) -> JsonResponse:
    """A cached JSON page built from the query string."""
    CALLS["search"] += 1
    return JsonResponse({"q": request.GET.get("q"), "call": CALLS["search"]})


def visits(request: HttpRequest) -> JsonResponse:
    """A session counter."""
    request.session["n"] = request.session.get("n", 0) + 1
    return JsonResponse({"n": request.session["n"]})


def fragment(request: HttpRequest) -> HttpResponse:
    """A template fragment cached with {% cache %}."""
    template = engines["django"].from_string(
        "{% load cache %}{% cache 60 frag %}<b>{{ n }}</b>{% endcache %}"
    )
    CALLS["fragment"] += 1
    return HttpResponse(template.render({"n": CALLS["fragment"]}))


urlpatterns = [
    path("page/", page),
    path("search/", search),
    path("visits/", visits),
    path("fragment/", fragment),
]
