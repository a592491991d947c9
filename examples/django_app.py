"""A small Django project on stratacache: CACHES backend, cache_page, sessions, model invalidation.

python examples/django_app.py            # memory tier only
REDIS_URL=redis://127.0.0.1:6379/0 python examples/django_app.py   # memory + Redis

It configures itself (settings, one model, three views), serves a few requests
through Django's test client and exits.
"""

from __future__ import annotations

import os
import sys

import django
from django.conf import settings

LOCATION = "memory://?maxsize=10000&ttl=30"
if os.environ.get("REDIS_URL"):
    LOCATION += "," + os.environ["REDIS_URL"]

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={
        "default": {
            "BACKEND": "stratacache.contrib.django.StratacacheBackend",
            "LOCATION": LOCATION,
            "KEY_PREFIX": "example-django",
            "TIMEOUT": 300,
        }
    },
    SESSION_ENGINE="django.contrib.sessions.backends.cache",
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    USE_TZ=True,
)
django.setup()

from django.core.cache import cache  # noqa: E402
from django.db import connection, models  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.cache import cache_page  # noqa: E402

from stratacache.contrib.django import close_all, invalidate_on_save  # noqa: E402


class Product(models.Model):
    name = models.CharField(max_length=50)
    price = models.IntegerField()

    class Meta:
        app_label = "contenttypes"  # borrow an installed app: this project has no app of its own


invalidate_on_save(Product, tags=["product:{pk}"])
renders = {"home": 0}


@cache_page(60)
def home(request: HttpRequest) -> HttpResponse:
    """A whole page cached by Django's cache_page, stored in stratacache's tiers."""
    renders["home"] += 1
    return HttpResponse(f"home, render #{renders['home']}")


def cart(request: HttpRequest) -> JsonResponse:
    """Session data kept by the cache session engine."""
    request.session["items"] = request.session.get("items", 0) + 1
    return JsonResponse({"items": request.session["items"]})


def product(request: HttpRequest, pk: int) -> JsonResponse:
    """Low-level API with a stratacache tag: saving the product invalidates it."""
    sc_cache = cache.cache  # the stratacache Cache behind the backend
    data = sc_cache.sync.get_or_set(
        f"product:{pk}",
        lambda: {"name": (p := Product.objects.get(pk=pk)).name, "price": p.price},
        ttl=300,
        tags=[f"product:{pk}"],
    )
    sc_cache.sync.incr("views:product")  # atomic; starts at 0 when absent
    return JsonResponse(data)


urlpatterns = [path("", home), path("cart/", cart), path("product/<int:pk>/", product)]


def main() -> int:
    with connection.schema_editor() as editor:
        editor.create_model(Product)
    cache.clear()
    client = Client()

    first, second = client.get("/").content, client.get("/").content
    print("cache_page:", first, second)
    assert first == second and renders["home"] == 1

    print("session:", [client.get("/cart/").json()["items"] for _ in range(3)])

    item = Product.objects.create(name="tea", price=3)
    print("product:", client.get(f"/product/{item.pk}/").json())
    item.price = 4
    item.save()  # post_save -> invalidate(tags=["product:<pk>"]) on commit
    after = client.get(f"/product/{item.pk}/").json()
    print("after save:", after)
    assert after["price"] == 4

    print("views counted:", cache.cache.sync.get("views:product"))
    print("stats:", {k: v["hits"] for k, v in cache.cache.stats()["tiers"].items()})
    close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
