"""Kotone pipeline. Importing the package hands the domain its settings (the domain reads no environment)."""

from kotone_pipeline.settings import install_domain_places

install_domain_places()
