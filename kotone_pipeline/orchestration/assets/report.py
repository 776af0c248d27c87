"""Unpartitioned report assets: the workflow log of every cycle, rebuilt after each promotion decision."""

import dagster as dg

from kotone_pipeline.domain.report.render import REPORTS_DIR, render_report, write_report_files
from kotone_pipeline.orchestration.metadata import path_value, readable
from kotone_pipeline.orchestration.report_collection import collect_report
from kotone_pipeline.orchestration.resources import ChampionRegistryResource, KotoneHomeResource


@dg.asset(
    group_name="report",
    # An unpartitioned asset after a partitioned one reads every cycle's decision. validation_job selects it,
    # so it is rebuilt in the same run as each promotion_decision.
    deps=["promotion_decision"],
    kinds={"markdown", "html"},
    description=(
        "The workflow log: per cycle its goal, inputs, runs, outputs, evidence links and metric deltas; "
        "the event log; repro commands; plots. Built only from the Dagster instance, the champion registry "
        "and the cycle records; written to $KOTONE_HOME/reports/workflow_log.md and .html."
    ),
)
def workflow_log(
    context: dg.AssetExecutionContext,
    kotone_home: KotoneHomeResource,
    champion_registry: ChampionRegistryResource,
) -> dg.MaterializeResult:
    artifacts = kotone_home.artifacts()
    report = collect_report(
        context.instance, artifacts, champion_registry.get_registry(), writing_run_id=context.run.run_id
    )
    rendered = render_report(report)
    paths = write_report_files(artifacts.home / REPORTS_DIR, rendered)
    decided = [c for c in report.cycles if c.delta is not None]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "workflow_log": dg.MetadataValue.md(rendered.markdown),
                "cycles": dg.MetadataValue.int(len(report.cycles)),
                "decided_cycles": dg.MetadataValue.int(len(decided)),
                "events": dg.MetadataValue.int(len(report.events)),
                "champion": dg.MetadataValue.text(report.champion or "none"),
                "md_path": path_value(paths["md"]),
                "html_path": path_value(paths["html"]),
            }
        )
    )
