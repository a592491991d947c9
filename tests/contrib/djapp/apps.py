"""The test app."""

from __future__ import annotations

from django.apps import AppConfig


class DjappConfig(AppConfig):
    """Test models and views for the Django backend."""

    name = "tests.contrib.djapp"
    label = "djapp"
