"""The merchant console (``/console/``): catalog, feeds, docids, models, analytics, quality.

Every page is scoped to one merchant named in the URL; :mod:`web.console.access` resolves it
from the signed-in user's memberships, so a merchant user can never reach another merchant's
data by editing a URL.
"""
