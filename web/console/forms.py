"""Console forms. Validation errors are shown inline next to their field by the templates."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from catalog.models import Category, FeedUpload, Merchant, Product

#: Largest feed file accepted through the browser (bigger feeds: ``manage.py import_catalog``).
DEFAULT_MAX_FEED_BYTES = 200 * 1024 * 1024
FEED_EXTENSIONS = {
    "csv": {".csv", ".txt"},
    "jsonl": {".jsonl", ".json", ".ndjson", ".txt"},
    "bestbuy": {".json", ".jsonl"},
}


class ConsoleLoginForm(AuthenticationForm):
    """Django's login form with the console's input styling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class ProductForm(forms.ModelForm):
    """Create or edit one product of the console's merchant.

    The merchant is fixed by the URL (never a form field), the sku must be unique within it,
    and the category choices are that merchant's categories only.
    """

    attributes = forms.JSONField(
        required=False,
        initial=dict,
        help_text='A JSON object, e.g. {"color": "Black", "storage": "128GB"}.',
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
    )

    image_url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", label="Image URL"
    )

    class Meta:
        model = Product
        fields = [
            "sku",
            "title",
            "brand",
            "category",
            "price",
            "popularity",
            "image_url",
            "description",
            "attributes",
            "active",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 5})}
        help_texts = {
            "sku": "Your stock-keeping unit; unique in your store and the key feeds update by.",
            "popularity": "Higher values rank higher when relevance ties.",
        }

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.merchant = merchant
        self.instance.merchant = merchant
        category = self.fields["category"]
        category.queryset = Category.objects.filter(merchant=merchant).order_by("path")
        category.label_from_instance = lambda c: c.full_name
        self.fields["price"].min_value = 0
        self.fields["price"].widget.attrs["min"] = "0"
        self.fields["popularity"].widget.attrs["min"] = "0"

    def clean_sku(self) -> str:
        sku = self.cleaned_data["sku"].strip()
        clash = Product.objects.filter(merchant=self.merchant, sku=sku)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("Another product of your store already has this sku.")
        return sku

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        if not title:
            raise forms.ValidationError("A product needs a title shoppers can search for.")
        return title

    def clean_price(self) -> Any:
        price = self.cleaned_data.get("price")
        if price is not None and price < 0:
            raise forms.ValidationError("Price cannot be negative.")
        return price

    def clean_popularity(self) -> float:
        popularity = self.cleaned_data.get("popularity") or 0.0
        if popularity < 0:
            raise forms.ValidationError("Popularity cannot be negative.")
        return popularity

    def clean_attributes(self) -> dict:
        attributes = self.cleaned_data.get("attributes")
        if attributes in (None, ""):
            return {}
        if not isinstance(attributes, dict):
            raise forms.ValidationError(
                "Attributes must be a JSON object of name → value, e.g. "
                + json.dumps({"color": "Black"})
            )
        return attributes


class FeedUploadForm(forms.ModelForm):
    """Upload a feed file; the import itself runs later in a Celery worker."""

    format = forms.ChoiceField(choices=FeedUpload.FORMAT_CHOICES, initial="csv")

    class Meta:
        model = FeedUpload
        fields = ["file", "format", "on_error"]
        labels = {"file": "Feed file", "on_error": "Invalid rows"}
        widgets = {"on_error": forms.RadioSelect}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        upload, fmt = cleaned.get("file"), cleaned.get("format")
        if upload is None or not fmt:
            return cleaned
        limit = getattr(settings, "CONSOLE_MAX_FEED_BYTES", DEFAULT_MAX_FEED_BYTES)
        if upload.size > limit:
            self.add_error(
                "file",
                f"The file is {upload.size / 2**20:.1f} MiB; the console accepts up to "
                f"{limit / 2**20:.0f} MiB. Import larger feeds with manage.py import_catalog.",
            )
        if upload.size == 0:
            self.add_error("file", "The file is empty.")
        suffix = PurePath(upload.name).suffix.lower()
        if suffix not in FEED_EXTENSIONS[fmt]:
            allowed = ", ".join(sorted(FEED_EXTENSIONS[fmt]))
            self.add_error("file", f"A {fmt} feed should be a {allowed} file, not {suffix!r}.")
        return cleaned


class ProductFilterForm(forms.Form):
    """The product list's search box and filters (GET)."""

    STATUS_CHOICES = [("", "All"), ("active", "Active"), ("inactive", "Inactive")]
    DOCID_CHOICES = [("", "Any"), ("missing", "Without docid")]

    q = forms.CharField(required=False, max_length=200, label="Search")
    category = forms.ModelChoiceField(
        queryset=Category.objects.none(), required=False, empty_label="All categories"
    )
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    docid = forms.ChoiceField(choices=DOCID_CHOICES, required=False, label="Docid")

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["category"].queryset = Category.objects.filter(merchant=merchant)
        self.fields["category"].label_from_instance = lambda c: c.full_name
