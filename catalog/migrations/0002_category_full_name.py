from django.db import migrations, models


def fill_full_names(apps, schema_editor):
    """Compute breadcrumbs for existing categories, parents before children."""
    Category = apps.get_model("catalog", "Category")
    names: dict[int, str] = {}
    for category in Category.objects.order_by("depth", "pk"):
        parent = names.get(category.parent_id) if category.parent_id else None
        category.full_name = f"{parent} > {category.name}" if parent else category.name
        names[category.pk] = category.full_name
        category.save(update_fields=["full_name"])


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="category",
            name="full_name",
            field=models.CharField(blank=True, editable=False, max_length=2000),
        ),
        migrations.RunPython(fill_full_names, migrations.RunPython.noop),
    ]
