//! Logging setup: human-readable text by default, JSON lines for log pipelines; with the `otel`
//! cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, prelude::*};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the trace exporter alive; `shutdown` flushes it.
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default levels: `info`, with the
/// Neo4j driver's per-connection chatter at `warn`.
pub fn init(format: LogFormat) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,neo4rs=warn"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => {
            let ansi = std::io::stdout().is_terminal();
            fmt::layer().with_target(false).with_ansi(ansi).boxed()
        }
        LogFormat::Json => fmt::layer().json().flatten_event(true).boxed(),
    };
    #[cfg(feature = "otel")]
    {
        let provider = otel::provider();
        let traces = provider.as_ref().map(otel::layer);
        tracing_subscriber::registry()
            .with(logs)
            .with(traces)
            .with(filter)
            .init();
        Telemetry { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        tracing_subscriber::registry()
            .with(logs)
            .with(filter)
            .init();
        Telemetry {}
    }
}

impl Telemetry {
    /// Sends the spans still buffered.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            // The blocking HTTP client must not run on the async runtime's threads.
            let _ = std::thread::spawn(move || provider.shutdown()).join();
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
    use tracing_subscriber::Layer;

    /// An OTLP/HTTP exporter to `OTEL_EXPORTER_OTLP_ENDPOINT`, when it is set.
    pub fn provider() -> Option<SdkTracerProvider> {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
        // Built on a plain thread: the blocking HTTP client may not be created on the runtime.
        std::thread::spawn(move || {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()
                .map_err(|e| eprintln!("OpenTelemetry export is off: {e}"))
                .ok()?;
            let resource = Resource::builder_empty()
                .with_service_name("dbconn-operator")
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        })
        .join()
        .ok()
        .flatten()
    }

    pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("dbconn-operator"))
    }
}
