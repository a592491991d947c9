"""A model for the invalidation-rule tests."""

from __future__ import annotations

from django.db import models


class Product(models.Model):
    """A product whose cached views are tagged ``product:<pk>``."""

    name = models.CharField(max_length=50)

    class Meta:
        app_label = "djapp"
