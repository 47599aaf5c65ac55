//! What the example programs share.

/// Logs to stderr, filtered by `RUST_LOG` (Foundation's own `info` events by default).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "foundation_actors=info".into()),
        )
        .init();
}

/// Logs to stderr (stdout is the program's own output), filtered by `RUST_LOG`, else by
/// `default` (`"info"`, `"warn"`…), with ractor_cluster's session lines at `warn` only.
pub fn init_logs(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("{default},ractor_cluster=error").into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
