//! Building and running the hub: choose the engines, bind, serve, and shut down in order.
//!
//! Shutdown order: the shutdown future resolves → the accept loop stops and the listener is
//! dropped (new connections are refused) → only then is `state.shutdown` cancelled, so every
//! WebSocket writer sends close 1001 while plain HTTP connections finish their requests → we
//! wait for the HTTP connections and the tracked connection tasks to finish their close
//! handshakes → the message log commits what is queued and its writer stops. All the waiting
//! shares one deadline, `--shutdown-grace-ms` after the signal. Graceful shutdown of HTTP
//! connections alone would not wait for upgraded sockets.

use crate::{
    Config,
    broker::{self, Fanout, local::LocalFanout, redis::RedisFanout},
    chat::{ChatDeps, presence::LocalPresence},
    net::{
        self,
        guard::{ip_limit::IpLimiter, origin::OriginPolicy, proxy::TrustedProxies},
    },
    stats::Stats,
    store::{MessageLog, postgres::PgLog, sqlite::SqliteLog},
};
use anyhow::Context;
use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How often presence applies what time decides: a leave after the grace, away, typing expiry.
const PRESENCE_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Everything a request handler or connection needs; cheap to clone (all handles).
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    /// Every setting, read-only after start-up.
    pub(crate) config: Arc<Config>,
    /// What chat sessions use (the engines behind their traits), handed to each session.
    pub(crate) chat: ChatDeps,
    /// Which pages may open a socket (checked before every upgrade).
    pub(crate) origins: Arc<OriginPolicy>,
    /// Sockets per client address (checked before every upgrade).
    pub(crate) ip_limiter: Arc<IpLimiter>,
    /// Whose forwarding headers say who the client is (`--trusted-proxies`).
    pub(crate) proxies: Arc<TrustedProxies>,
    /// Counters and gauges behind `/metrics` and `/healthz`.
    pub(crate) stats: Arc<Stats>,
    /// Cancelled when the process should stop; every connection watches it and sends 1001.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled as soon as the shutdown signal arrives (before `shutdown`): the listener stops
    /// accepting and `/readyz` says not ready.
    pub(crate) draining: CancellationToken,
    /// Every connection task and history read, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// The last connection id handed out; ids only name connections in logs and presence.
    conn_ids: Arc<AtomicU64>,
}

impl AppState {
    /// Chooses and starts the engines: the one place that knows which ones run. The message log
    /// is SQLite (embedded, the default) or PostgreSQL (`--database`); fan-out is in-process, or
    /// through Redis between hubs (`--redis`); presence is in-process.
    pub(crate) async fn new(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let stats: Arc<Stats> = Arc::default();
        let tracker = TaskTracker::new();
        let presence = Arc::new(LocalPresence::new(config.presence()));
        if config.redis.is_some() && config.database.is_none() {
            // every hub would number the rooms of its own SQLite file: the seqs would collide
            anyhow::bail!("--redis needs --database: hubs that fan out to each other must share one history");
        }
        let redis = match &config.redis {
            Some(url) => Some(Arc::new(
                RedisFanout::start(
                    url,
                    presence.clone(),
                    stats.clone(),
                    std::time::Duration::from_millis(config.redis_heartbeat_ms),
                )
                .with_context(|| format!("cannot use Redis at {}", redacted(url)))?,
            )),
            None => None,
        };
        let fanout: Arc<dyn Fanout> = match &redis {
            Some(redis) => redis.clone(),
            None => Arc::new(LocalFanout::new(presence.clone())),
        };
        let on_commit = broker::after_commit(fanout.clone());
        let log: Arc<dyn MessageLog> = match &config.database {
            Some(url) => Arc::new(
                PgLog::open(url, stats.clone(), on_commit)
                    .await
                    .with_context(|| format!("cannot open the PostgreSQL database {}", redacted(url)))?,
            ),
            None => Arc::new(
                SqliteLog::open(
                    &config.db,
                    config.db_sync,
                    std::time::Duration::from_millis(config.db_busy_timeout_ms),
                    stats.clone(),
                    on_commit,
                    config.history_page,
                )
                .with_context(|| format!("cannot open the database {}", config.db.display()))?,
            ),
        };
        if let Some(redis) = &redis {
            redis.set_log(log.clone());
        }
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Some(url) = &config.auth_token_url {
            // the page fetches it, and the Content-Security-Policy must name its origin
            anyhow::ensure!(
                (url.starts_with('/') && !url.starts_with("//")) || crate::net::guard::csp::origin(url).is_some(),
                "--auth-token-url must be a path on this site (/chat-token) or an http(s):// URL, not {url:?}"
            );
        }
        let auth = crate::chat::auth::Verifier::from_config(
            config.auth_jwt_secret.as_deref(),
            config.auth_jwt_public_key.as_deref(),
            config.auth_token_url.clone(),
        )?
        .map(Arc::new);
        let chat = ChatDeps {
            welcome: ChatDeps::welcome(&config, log.as_ref(), auth.as_deref()),
            config: config.clone(),
            log,
            presence,
            fanout,
            auth,
            stats: stats.clone(),
            tasks: tracker.clone(),
            started_at,
        };
        Ok(Self {
            origins: Arc::new(OriginPolicy::new(&config.allowed_origins)),
            ip_limiter: Arc::new(IpLimiter::new(config.max_connections_per_ip)),
            proxies: Arc::new(TrustedProxies::new(&config.trusted_proxies).map_err(anyhow::Error::msg)?),
            config,
            chat,
            stats,
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            tracker,
            conn_ids: Arc::default(),
        })
    }

    pub(crate) fn new_conn_id(&self) -> net::ConnId {
        self.conn_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A database URL without its password, for messages and logs.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// A bound, not yet serving hub (zero2prod's `Application`): tests and `main` build it, read
/// the address it got, then run it until their shutdown future resolves.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// `--tls-cert` and `--tls-key`, read at start-up.
    tls: Option<net::tls::Tls>,
}

impl Application {
    /// Binds the listener and opens the engines; the server starts with [`Application::run_until`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener =
            net::accept::listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(net::tls::Tls::new(cert, key)?),
            _ => None,
        };
        Ok(Self { listener, state: AppState::new(config).await?, tls })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where people reach it: `http://ADDR`, or `https://ADDR` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// Serves until `shutdown` resolves, then drains as described in the module docs.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state;
        let stop_accepting = state.draining.clone();
        let trigger = stop_accepting.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        // presence changes that time decides (grace, away, typing expiry), a few times a second;
        // then fan-out forgets the rooms nobody here is in any more
        state.tracker.spawn({
            let (presence, fanout, stop) =
                (state.chat.presence.clone(), state.chat.fanout.clone(), state.shutdown.clone());
            async move {
                let mut tick = tokio::time::interval(PRESENCE_TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            presence.tick(tokio::time::Instant::now());
                            fanout.sweep();
                        }
                        _ = stop.cancelled() => break,
                    }
                }
            }
        });
        // a renewed certificate is read again on SIGHUP; open connections are not touched
        #[cfg(unix)]
        if let Some(tls) = self.tls.clone() {
            let stop = state.shutdown.clone();
            state.tracker.spawn(async move {
                let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = hangups.recv() => match tls.reload() {
                            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                            Err(e) => tracing::error!(cause = %format!("{e:#}"), "SIGHUP: TLS certificate not reloaded; the old one stays"),
                        },
                        _ = stop.cancelled() => break,
                    }
                }
            });
        }
        let router = net::routes::router(state.clone());
        let http = net::accept::accept_until(self.listener, router, &state.config, self.tls, stop_accepting).await;
        // one deadline for all the waiting below
        let deadline = tokio::time::Instant::now() + state.config.shutdown_grace();
        // the listener is gone: once a client hears 1001, nobody can connect any more
        state.shutdown.cancel();
        if tokio::time::timeout_at(deadline, http.shutdown()).await.is_err() {
            tracing::warn!("HTTP connections still open after the shutdown grace");
        }
        state.tracker.close();
        if tokio::time::timeout_at(deadline, state.tracker.wait()).await.is_err() {
            tracing::warn!(open = state.tracker.len(), "connections still open after the shutdown grace");
        }
        // what was acknowledged is committed already; this commits what is still queued
        if tokio::time::timeout_at(deadline, state.chat.log.close()).await.is_err() {
            tracing::warn!("the message log's writer did not stop within the shutdown grace");
        }
        tracing::info!("shut down");
        Ok(())
    }
}
