"""The workflow log: its model (``model``), its document sections (``sections``), markdown/HTML/JSON
(``render``) and plots (``plots``). Pure; collected from the Dagster instance by
``kotone_pipeline.orchestration.report_collection``."""
