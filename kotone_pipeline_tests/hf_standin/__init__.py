"""A local stand-in for the Hugging Face Hub and Jobs API, for tests and manual runs (see ``server``)."""
