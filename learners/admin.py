"""Admin for the model registry: see versions and their metrics; change them with the registry
functions (``manage.py models``), which keep one active version per kind and merchant."""

from __future__ import annotations

from django.contrib import admin

from learners.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "merchant", "status", "created", "activated_at")
    list_filter = ("kind", "status", "merchant")
    search_fields = ("name",)
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training jobs, not forms
