"""Views of the web app: ``storefront`` renders HTML pages for shoppers, ``api`` serves JSON."""
