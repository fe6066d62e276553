"""Django admin for the catalog: staff tooling with search and filters on every list."""

from django.contrib import admin

from catalog.models import (
    Category,
    Docid,
    DocidScheme,
    FeedUpload,
    Merchant,
    MerchantMembership,
    Product,
)


class MembershipInline(admin.TabularInline):
    """Who may use the merchant console for this merchant (staff need no membership)."""

    model = MerchantMembership
    raw_id_fields = ["user"]
    extra = 0


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["path", "name", "merchant", "depth"]
    list_filter = ["merchant", "depth"]
    search_fields = ["path", "name"]
    raw_id_fields = ["parent"]


class DocidInline(admin.StackedInline):
    model = Docid
    fields = ["path", "scheme", "assigned_at"]
    readonly_fields = fields
    can_delete = False
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "brand", "price", "category", "merchant", "active"]
    list_filter = ["merchant", "active", "category__depth"]
    search_fields = ["sku", "title", "brand"]
    list_select_related = ["merchant", "category"]
    raw_id_fields = ["category"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [DocidInline]


@admin.register(Docid)
class DocidAdmin(admin.ModelAdmin):
    list_display = ["path", "product", "merchant", "assigned_at"]
    list_filter = ["merchant"]
    search_fields = ["path", "product__sku", "product__title"]
    list_select_related = ["product", "merchant"]
    readonly_fields = ["product", "merchant", "path", "scheme", "assigned_at"]


@admin.register(DocidScheme)
class DocidSchemeAdmin(admin.ModelAdmin):
    list_display = ["merchant", "version", "created_at"]
    list_filter = ["merchant"]
    readonly_fields = ["merchant", "version", "params", "created_at"]
    exclude = ["codebook"]


@admin.register(MerchantMembership)
class MerchantMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "merchant", "role", "created_at"]
    list_filter = ["role", "merchant"]
    search_fields = ["user__username", "user__email", "merchant__name"]
    list_select_related = ["user", "merchant"]
    raw_id_fields = ["user"]


@admin.register(FeedUpload)
class FeedUploadAdmin(admin.ModelAdmin):
    list_display = ["original_name", "merchant", "format", "status", "processed_rows", "created"]
    list_filter = ["status", "format", "merchant"]
    search_fields = ["original_name", "merchant__name", "task_id"]
    list_select_related = ["merchant", "user"]
    readonly_fields = [
        "merchant",
        "user",
        "file",
        "original_name",
        "format",
        "on_error",
        "status",
        "total_rows",
        "processed_rows",
        "counts",
        "report",
        "error",
        "task_id",
        "created",
        "finished",
    ]
