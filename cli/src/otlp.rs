//! Exporting a session's counters over OTLP/HTTP (protobuf) with the
//! OpenTelemetry SDK: built only with the `otlp` cargo feature, so the
//! default build carries no HTTP client.
//!
//! When the session ends, its [`Metrics`] become monotonic counters on a
//! meter named `execgate`, each data point labelled with the sandbox type
//! and the profile (as agents label their tool-call metrics), and the meter
//! provider's shutdown pushes them to `--otlp-endpoint` (or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, to which `/v1/metrics` is appended). An
//! export that fails is reported on stderr; it never changes the command's
//! exit status.

use anyhow::{Context, Result};
use execgate_core_bridge::Metrics;
use opentelemetry::metrics::MeterProvider;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::Resource;

/// The standard variable naming a collector's base URL.
const STANDARD_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[derive(clap::Args)]
pub struct OtlpArgs {
    /// Send the session's counters to this OTLP/HTTP metrics endpoint
    /// (e.g. http://127.0.0.1:4318/v1/metrics) when it ends. Default: from
    /// OTEL_EXPORTER_OTLP_ENDPOINT; none: no export.
    #[arg(long, value_name = "URL", global = true)]
    otlp_endpoint: Option<String>,
}

impl OtlpArgs {
    fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint.clone().or_else(|| {
            let base = std::env::var(STANDARD_ENDPOINT).ok()?;
            Some(format!("{}/v1/metrics", base.trim_end_matches('/')))
        })
    }
}

/// Exports `metrics` if an endpoint is configured; reports a failure on
/// stderr. Call outside any async runtime (the HTTP client blocks).
pub fn export_if_configured(args: &OtlpArgs, metrics: &Metrics) {
    let Some(endpoint) = args.endpoint() else {
        return;
    };
    if let Err(error) = export(&endpoint, metrics) {
        crate::stderr::line(&format!(
            "execgate: the session's metrics were not exported to {endpoint}: {error:#}"
        ));
    }
}

fn export(endpoint: &str, metrics: &Metrics) -> Result<()> {
    let exporter = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .context("cannot build the OTLP exporter")?;
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("execgate").build())
        .build();
    let meter = provider.meter("execgate");
    let base = [
        KeyValue::new("sandbox", metrics.sandbox),
        KeyValue::new("profile", metrics.profile.clone()),
    ];
    let with = |key: &'static str, value: String| {
        let mut attributes = base.to_vec();
        attributes.push(KeyValue::new(key, value));
        attributes
    };
    let decisions = meter
        .u64_counter("execgate.decisions")
        .with_description("exec decisions, by outcome")
        .build();
    for (outcome, count) in [
        ("run", metrics.decided_run),
        ("escalate", metrics.decided_escalate),
        ("deny", metrics.decided_deny),
    ] {
        decisions.add(count, &with("decision", outcome.into()));
    }
    let escalations = meter
        .u64_counter("execgate.escalations")
        .with_description("escalated execs, by where they ran")
        .build();
    for (execution, count) in &metrics.escalations_by_execution {
        escalations.add(*count, &with("execution", (*execution).into()));
    }
    meter
        .u64_counter("execgate.spawn_failures")
        .with_description("escalations whose child could not be started")
        .build()
        .add(metrics.spawn_failures, &base);
    let sandbox_failures = meter
        .u64_counter("execgate.sandbox_start_failures")
        .with_description("shells and their sandboxes that could not be started, by reason")
        .build();
    for (reason, count) in &metrics.sandbox_start_failures {
        sandbox_failures.add(*count, &with("reason", reason.clone()));
    }
    meter
        .u64_counter("execgate.approvals")
        .with_description("decisions a person was asked for")
        .build()
        .add(metrics.approvals, &base);
    meter
        .f64_counter("execgate.approval_wait")
        .with_unit("s")
        .with_description("time spent waiting for approvals")
        .build()
        .add(metrics.approval_wait.as_secs_f64(), &base);
    // Shutting down collects and pushes once, and waits for the answer.
    provider
        .shutdown()
        .context("the OTLP endpoint did not take the metrics")
}
