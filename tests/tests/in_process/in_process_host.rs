//! A host in this process: the application state loaded on fresh folders (as `serve` loads
//! it), and its router called with tower's `oneshot`. No process, no socket, no connection
//! loop: what it answers is what the routes, the key checks and the request admission decide.
//!
//! Not served here (the end-to-end suites have them): the connection loop's limits, the
//! plugin watcher, the store follower, the purge task and the log. `/metrics` is: each host
//! has a recorder of its own, set as the local recorder of every thread that runs it (the
//! process's global recorder would mix the counts of hosts tested at the same time).

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use axum::body::Body;
use axum::http::Request;
use connector_host::state::{AppState, ServeConfig};
use e2e_tests::postgres::PostgresCluster;
use e2e_tests::{HostFolders, SharedDatabase, StoreKind, ADMIN_KEY, SEND_KEY};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct InProcessHost {
    /// Taken in `drop`, so the state goes inside its runtime.
    router: Option<axum::Router>,
    /// This host's metrics; leaked, as the runtime's threads keep it set until they end.
    recorder: &'static metrics_exporter_prometheus::PrometheusRecorder,
    runtime: tokio::runtime::Runtime,
    folders: HostFolders,
}

impl InProcessHost {
    /// A host whose plugins folder holds `plugins` (file name, source path), configured as
    /// [`HostFolders::start`] starts one: the test keys, a per-recipient limit no test
    /// reaches by accident, no resend cooldown.
    pub fn start(plugins: &[(&str, &Path)]) -> InProcessHost {
        Self::start_with(plugins, |config| {
            config.send_limits.max_sends_per_recipient = 1_000_000;
            config.send_limits.resend_cooldown = std::time::Duration::ZERO;
        })
    }

    /// A host with the test keys and every other setting at its flag's default, changed by
    /// `configure` first (where an end-to-end test passes flags).
    pub fn start_with(
        plugins: &[(&str, &Path)],
        configure: impl FnOnce(&mut ServeConfig),
    ) -> InProcessHost {
        let database = match e2e_tests::store_kind() {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(SharedDatabase::create(&shared_cluster())),
        };
        let folders = HostFolders::with_database(plugins, database);
        let mut config = serve_config(&folders);
        configure(&mut config);
        let recorder: &'static _ = Box::leak(Box::new(
            connector_host::telemetry::build_metrics_recorder().expect("a recorder"),
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // For the thread's whole life: the recorder is never freed.
            .on_thread_start(move || {
                std::mem::forget(metrics::set_default_local_recorder(recorder))
            })
            .enable_all()
            .build()
            .expect("a runtime");
        let state = {
            let _recorder = metrics::set_default_local_recorder(recorder);
            runtime
                .block_on(AppState::load(config, Some(recorder.handle())))
                .unwrap_or_else(|error| panic!("the host did not start: {error}"))
        };
        let state = Arc::new(state);
        // On PostgreSQL, the protection's exchanges run as `serve` runs them.
        runtime.block_on(async { connector_host::server::start_protection_sharing(&state) });
        let router = connector_host::server::router(state);
        let host = InProcessHost {
            router: Some(router),
            recorder,
            runtime,
            folders,
        };
        // The store `E2E_STORE` asks for, not the default by mistake.
        let expected_store = match host.folders.database {
            Some(_) => "postgres",
            None => "sqlite",
        };
        let (status, health) = host.request("GET", "/health", None, None);
        assert_eq!(
            (status, health["storeKind"].as_str()),
            (200, Some(expected_store)),
            "{health}"
        );
        host
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics_text(&self) -> String {
        let (status, body) = self.request("GET", "/metrics", None, None);
        assert_eq!(status, 200);
        body.as_str().expect("text").to_owned()
    }

    /// Every line of this host's outbox (see [`HostFolders::outbox_lines`]).
    pub fn outbox_lines(&self) -> Vec<Value> {
        self.folders.outbox_lines()
    }

    /// A request with the admin key.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, Some(ADMIN_KEY), None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(ADMIN_KEY), Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("PATCH", path, Some(ADMIN_KEY), Some(body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.request("DELETE", path, Some(ADMIN_KEY), None)
    }

    /// Any method, with a chosen key (or none) and an optional JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(Value::to_string);
        self.request_raw(
            method,
            path,
            key,
            body.as_deref().map(|body| ("application/json", body)),
        )
    }

    /// Any method with a raw body and content type, for malformed-body tests.
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let authorization = key.map(|key| format!("Bearer {key}"));
        self.request_with_authorization(method, path, authorization.as_deref(), body)
    }

    /// Like [`InProcessHost::request_raw`], with the whole `Authorization` header chosen.
    pub fn request_with_authorization(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(authorization) = authorization {
            builder = builder.header("Authorization", authorization);
        }
        let request = match body {
            // As a client sends it over HTTP/1: with its length.
            Some((content_type, body)) => builder
                .header("Content-Type", content_type)
                .header("Content-Length", body.len())
                .body(Body::from(body.to_owned())),
            None => builder.body(Body::empty()),
        }
        .expect("a request");
        self.call(request)
    }

    /// Hands `request` to the router; the status and the body, parsed as JSON when it is.
    pub fn call(&self, request: Request<Body>) -> (u16, Value) {
        let (status, _, body) = self.call_with_headers(request);
        (status, body)
    }

    /// [`InProcessHost::call`], with the response's headers.
    pub fn call_with_headers(&self, request: Request<Body>) -> (u16, axum::http::HeaderMap, Value) {
        let router = self
            .router
            .clone()
            .expect("the router lives as long as the host");
        // `block_on` runs the request on this thread.
        let _recorder = metrics::set_default_local_recorder(self.recorder);
        self.runtime.block_on(async move {
            let response = router
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("the body")
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            let json = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
            };
            (status, headers, json)
        })
    }
}

impl Drop for InProcessHost {
    fn drop(&mut self) {
        // The state's store and pools end inside the runtime they were made in.
        let _inside = self.runtime.enter();
        drop(self.router.take());
    }
}

/// What `serve --admin-key ADMIN_KEY --send-key SEND_KEY` on `folders` gets: every other
/// flag at its default.
fn serve_config(folders: &HostFolders) -> ServeConfig {
    let database = folders.database.as_ref();
    ServeConfig {
        delivery_reports: Default::default(),
        fallback_breaker: Default::default(),
        plugins_dir: folders.plugins_dir.clone(),
        plugin_workers: None,
        data_dir: folders.data_dir.clone(),
        admin_keys: vec![ADMIN_KEY.to_owned()],
        send_keys: vec![SEND_KEY.to_owned()],
        send_executor: Default::default(),
        send_limits: Default::default(),
        code_policy: Default::default(),
        protection: Default::default(),
        allowed_plugin_sha256: None,
        trusted_plugin_key_files: Vec::new(),
        // Never watched here: the router is all that runs.
        plugin_watch: connector_host::live::plugin_watcher::PluginWatchMode::Notify,
        phone_validation: Default::default(),
        database_url: database.map(|database| database.url.clone()),
        code_hash_key_file: database.map(|database| database.code_hash_key_file.clone()),
        secrets_key_file: database.map(|database| database.secrets_key_file.clone()),
        database_password_file: None,
        store_notifications: true,
        http_limits: Default::default(),
        access_log: false,
        database_wait: None,
        shutdown: Default::default(),
    }
}

/// One PostgreSQL cluster for the hosts of this process that run at the same time, each on a
/// database of its own: with the usual several test threads, one cluster for the whole run
/// instead of an initdb per host. Stopped when the last of them ends (a static `Arc` would
/// never be dropped and leave the server running after the tests).
fn shared_cluster() -> Arc<PostgresCluster> {
    static CLUSTER: Mutex<Weak<PostgresCluster>> = Mutex::new(Weak::new());
    let mut shared = CLUSTER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(PostgresCluster::start());
    *shared = Arc::downgrade(&cluster);
    cluster
}

/// The status and the error code of an answer (`""` when it has none).
pub fn code_of((status, body): (u16, Value)) -> (u16, String) {
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// The status and the error code of a refusal, which must also say why in a `message`.
pub fn refusal_of((status, body): (u16, Value)) -> (u16, String) {
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "a refusal without a message: {status} {body}"
    );
    code_of((status, body))
}
