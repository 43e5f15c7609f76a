//! `hubbub`: starts the hub. `hubbub --help` lists every setting.

use clap::Parser;
use hubbub_server::{Application, Config};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of the system's malloc: see the dependency's comment in Cargo.toml.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // logs on stderr; stdout carries only the address line below, for scripts and tests
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("hubbub_server=info,tower_http=warn")),
        )
        .init();
    let app = Application::build(config).await?;
    // the one line tests and people look for: which address we really got (port 0 picks one)
    println!("hubbub listening on {}", app.url());
    app.run_until(shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; closing connections with 1001");
}
