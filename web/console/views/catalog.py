"""Catalog panel: product list with search, filters and pagination; create, edit, detail and
(de)activate. Every product lookup goes through the merchant of the URL, which
``merchant_view`` already checked against the user's memberships."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from catalog.models import Docid, Merchant, Product
from learners.models import HourlyAggregate
from web.console.access import merchant_view
from web.console.forms import ProductFilterForm, ProductForm
from web.console.serving import serving_model
from web.console.views import render_panel

PAGE_SIZE = 25


def merchant_products(merchant: Merchant) -> QuerySet[Product]:
    """The one queryset every catalog view starts from."""
    return Product.objects.filter(merchant=merchant).select_related("category", "docid")


def filter_products(products: QuerySet[Product], form: ProductFilterForm) -> QuerySet[Product]:
    """Apply the list's search box and filters; a category includes its sub-categories."""
    if not form.is_valid():
        return products
    data = form.cleaned_data
    if data["q"]:
        text = data["q"].strip()
        products = products.filter(
            Q(sku__iexact=text)
            | Q(title__icontains=text)
            | Q(brand__icontains=text)
            | Q(docid__path__startswith=text)
        )
    if data["category"]:
        products = products.filter(category__path__startswith=data["category"].path)
    if data["status"]:
        products = products.filter(active=data["status"] == "active")
    if data["docid"] == "missing":
        products = products.filter(docid__isnull=True)
    return products


@merchant_view()
def product_list(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    form = ProductFilterForm(request.GET or None, merchant=merchant)
    products = filter_products(merchant_products(merchant), form).order_by("-updated_at", "sku")
    page = Paginator(products, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_panel(
        request,
        "products.html",
        "catalog",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "total": Product.objects.filter(merchant=merchant).count(),
        },
    )


@merchant_view(edit=True)
def product_create(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    form = ProductForm(request.POST or None, merchant=merchant)
    if request.method == "POST" and form.is_valid():
        product = form.save()
        messages.success(request, f"Created {product.sku}. It gets a docid and is searchable now.")
        return redirect("console:product", merchant_slug=merchant.slug, pk=product.pk)
    return render_panel(request, "product_form.html", "catalog", {"form": form, "product": None})


@merchant_view(edit=True)
def product_edit(request: HttpRequest, merchant: Merchant, pk: int) -> HttpResponse:
    product = get_object_or_404(merchant_products(merchant), pk=pk)
    form = ProductForm(request.POST or None, instance=product, merchant=merchant)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Saved {product.sku}.")
        return redirect("console:product", merchant_slug=merchant.slug, pk=product.pk)
    return render_panel(request, "product_form.html", "catalog", {"form": form, "product": product})


@merchant_view()
def product_detail(request: HttpRequest, merchant: Merchant, pk: int) -> HttpResponse:
    product = get_object_or_404(merchant_products(merchant), pk=pk)
    docid = Docid.objects.filter(product=product).first()
    model = serving_model(merchant)
    stats = HourlyAggregate.objects.filter(merchant=merchant.slug, level="sku", sku=product.sku)
    totals = {
        field: sum(getattr(row, field) for row in stats)
        for field in ("impressions", "clicks", "add_to_carts", "purchases")
    }
    return render_panel(
        request,
        "product_detail.html",
        "catalog",
        {
            "product": product,
            "docid": docid,
            "model": model,
            "learned": model.learned(docid.path if docid else None) if model else None,
            "totals": totals,
        },
    )


@require_POST
@merchant_view(edit=True)
def product_toggle_active(request: HttpRequest, merchant: Merchant, pk: int) -> HttpResponse:
    """Deactivate (hide from search, keep the row and its docid) or reactivate a product."""
    product = get_object_or_404(merchant_products(merchant), pk=pk)
    product.active = not product.active
    product.save(update_fields=["active", "updated_at"])
    state = "reactivated" if product.active else "deactivated: hidden from search"
    messages.success(request, f"{product.sku} {state}.")
    return redirect("console:product", merchant_slug=merchant.slug, pk=product.pk)
