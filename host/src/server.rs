//! Application state, the router, and serving on a listener.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::{Method, Uri};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::api_error::ApiError;
use crate::factory_registry::FactoryRegistry;
use crate::plugin_loader::PluginLoader;
use crate::routes;

/// What `serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
}

/// Shared by every request.
pub struct AppState {
    pub config: ServeConfig,
    pub loader: PluginLoader,
    /// Swapped whole when plugins change; readers never block.
    pub factories: ArcSwap<FactoryRegistry>,
}

impl AppState {
    /// Prepares the data directory and loads the plugins folder. Blocking: run it off the
    /// async workers. A plugins folder that cannot be read leaves the host serving with no
    /// factories; only an unusable data directory is fatal.
    pub fn load(config: ServeConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        std::fs::create_dir_all(&config.plugins_dir)?;
        let loader = PluginLoader::new(config.data_dir.join("plugin-copies"))?;
        let registry = FactoryRegistry::scan_folder(&loader, &config.plugins_dir).unwrap_or_else(|error| {
            tracing::error!(plugins_dir = %config.plugins_dir.display(), %error, "cannot read the plugins folder");
            FactoryRegistry::default()
        });
        Ok(Self {
            config,
            loader,
            factories: ArcSwap::from_pointee(registry),
        })
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(routes::health::get_health))
        .route(
            "/api/connector-factories",
            get(routes::connector_factories::list_connector_factories),
        )
        .route(
            "/api/connector-factories/{id}",
            get(routes::connector_factories::get_connector_factory),
        )
        .route("/api/plugins", get(routes::plugins::list_plugin_files))
        .fallback(route_not_found)
        .with_state(state)
}

async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Serves until ctrl-c or SIGTERM.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
