//! The host's outbox: where development connectors' messages go instead of a provider.
//!
//! Plugins do no I/O, the mock included: the mock describes a request to
//! [`HOST_OUTBOX_URL`], a URL with a scheme of its own that no network client serves, and
//! the executor answers it here by appending the body, one JSON object, as one line of a file
//! the host owns (`<data>/mock-sms-outbox.jsonl`, 0600). No path ever comes from a config or
//! the API. Only the factories in [`DEVELOPMENT_FACTORIES`] may use it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plugin_api::{ConnectorError, HttpRequest, HttpResponse};
use serde_json::Value;

/// The destination a development connector's request names to reach the host's outbox.
pub const HOST_OUTBOX_URL: &str = "connector-host:outbox";

/// The outbox's file name in the data directory.
pub const OUTBOX_FILE_NAME: &str = "mock-sms-outbox.jsonl";

/// Factories for development only: they send nothing and may write to the host's outbox.
/// The API marks them `isDemo: true` and the host warns when one is live.
pub const DEVELOPMENT_FACTORIES: &[&str] = &["mock-short-message-service"];

/// Past this size the outbox is renamed to `<file>.1` (replacing the previous one) and
/// started anew, so a development connector left live cannot fill the disk.
pub const MAX_OUTBOX_BYTES: u64 = 16 * 1024 * 1024;

pub fn is_development_factory(factory_id: &str) -> bool {
    DEVELOPMENT_FACTORIES.contains(&factory_id)
}

/// `<data>/mock-sms-outbox.jsonl`.
pub fn outbox_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OUTBOX_FILE_NAME)
}

/// Who is sending, for the outbox line and the development-only check.
#[derive(Debug, Clone, Copy)]
pub struct SendOrigin<'a> {
    /// The saved connector's id; `None` for a config test (`POST /api/connectors/{id}/test`).
    pub connector_id: Option<&'a str>,
    pub factory_id: &'a str,
}

/// One WARN line when a development connector becomes live (at start-up, on a change, or
/// when another host made it live): it sends nothing, which an operator must not miss.
pub fn warn_if_development_connector_is_live(
    connector_id: &str,
    factory_id: &str,
    outbox: Option<&Path>,
) {
    if is_development_factory(factory_id) {
        let destination = outbox.map_or_else(
            || "nowhere (the host has no outbox)".to_owned(),
            |path| path.display().to_string(),
        );
        tracing::warn!(%connector_id, %factory_id, "development connector {connector_id} ({factory_id}) is live: messages go to {destination}, nothing is sent");
    }
}

/// The outbox file, appended to off the async workers.
pub struct HostOutbox {
    path: PathBuf,
    max_bytes: u64,
    /// Serializes the size check, the rotation and the append: two sends must not both
    /// rotate (the second would move the first's fresh file over the kept one).
    writing: Mutex<()>,
}

impl HostOutbox {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes,
            writing: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers a request to [`HOST_OUTBOX_URL`]: `200` once the line is in the file; every
    /// refusal or failure is a connector error.
    pub async fn answer(
        self: &Arc<Self>,
        origin: SendOrigin<'_>,
        request: &HttpRequest,
    ) -> Result<HttpResponse, ConnectorError> {
        let refused = |message: String| ConnectorError::general(message);
        if !is_development_factory(origin.factory_id) {
            return Err(refused(format!(
                "the host outbox ({HOST_OUTBOX_URL}) is for development connectors only; the factory {:?} is not one",
                origin.factory_id
            )));
        }
        if request.method() != "POST" {
            return Err(refused(format!(
                "the host outbox takes POST, not {}",
                request.method()
            )));
        }
        let line = outbox_line(origin, request.body()).map_err(refused)?;
        let outbox = Arc::clone(self);
        tokio::task::spawn_blocking(move || outbox.append(&line))
            .await
            .map_err(|error| refused(format!("the host outbox write did not finish: {error}")))?
            .map_err(|error| {
                refused(format!(
                    "cannot append to the host outbox ({OUTBOX_FILE_NAME} in the data directory): {error}"
                ))
            })?;
        Ok(HttpResponse::new(200, Vec::new()))
    }

    /// One `write` of the whole line on a file opened for append: lines never interleave.
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        // A poisoned lock guards no data: the file is whatever the last write left.
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = self.open()?;
        let size = file.metadata()?.len();
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            let mut kept = self.path.clone().into_os_string();
            kept.push(".1");
            std::fs::rename(&self.path, kept)?;
            file = self.open()?;
        }
        file.write_all(line)
    }

    fn open(&self) -> std::io::Result<std::fs::File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            // The data directory is the host's; a link planted there is not followed.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&self.path)
    }
}

/// The connector's JSON object with `connectorId` and `factoryId` added, and a newline.
fn outbox_line(origin: SendOrigin<'_>, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut entry = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(entry)) => entry,
        Ok(_) => return Err("the host outbox takes one JSON object".to_owned()),
        Err(error) => return Err(format!("the host outbox takes one JSON object: {error}")),
    };
    entry.insert(
        "connectorId".to_owned(),
        origin
            .connector_id
            .map_or(Value::Null, |id| Value::String(id.to_owned())),
    );
    entry.insert(
        "factoryId".to_owned(),
        Value::String(origin.factory_id.to_owned()),
    );
    let mut line = serde_json::to_vec(&entry).map_err(|error| error.to_string())?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MOCK: SendOrigin<'static> = SendOrigin {
        connector_id: Some("abc123"),
        factory_id: "mock-short-message-service",
    };

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn request(body: &Value) -> HttpRequest {
        HttpRequest::post_json(HOST_OUTBOX_URL, body)
    }

    #[tokio::test]
    async fn a_line_carries_the_connector_and_factory_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let outbox = Arc::new(HostOutbox::new(
            outbox_path(folder.path()),
            MAX_OUTBOX_BYTES,
        ));
        let answer = outbox
            .answer(MOCK, &request(&json!({"to": "+1", "content": "x"})))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let test = SendOrigin {
            connector_id: None,
            ..MOCK
        };
        outbox
            .answer(test, &request(&json!({"content": "y"})))
            .await
            .unwrap();
        let written = lines(outbox.path());
        assert_eq!(written[0]["connectorId"], "abc123");
        assert_eq!(written[0]["factoryId"], "mock-short-message-service");
        assert_eq!(written[0]["content"], "x");
        assert_eq!(written[1]["connectorId"], Value::Null);
        let mode = std::fs::metadata(outbox.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn other_factories_and_bodies_are_refused_without_a_write() {
        let folder = tempfile::tempdir().unwrap();
        let outbox = Arc::new(HostOutbox::new(
            outbox_path(folder.path()),
            MAX_OUTBOX_BYTES,
        ));
        let vendor = SendOrigin {
            connector_id: Some("x"),
            factory_id: "http-sms",
        };
        let Err(error) = outbox.answer(vendor, &request(&json!({"a": 1}))).await else {
            panic!("a vendor factory reached the outbox")
        };
        assert!(
            error.message.contains("development connectors only"),
            "{}",
            error.message
        );
        for body in [&b"[1]"[..], b"not json"] {
            let not_an_object = HttpRequest::post(HOST_OUTBOX_URL, "application/json", body);
            assert!(outbox.answer(MOCK, &not_an_object).await.is_err());
        }
        assert!(!outbox.path().exists());
    }

    #[tokio::test]
    async fn past_its_bound_the_outbox_is_kept_as_dot_1_and_started_anew() {
        let folder = tempfile::tempdir().unwrap();
        let outbox = Arc::new(HostOutbox::new(outbox_path(folder.path()), 200));
        for index in 0..5 {
            let body = json!({"index": index, "content": "a line of some forty bytes"});
            outbox.answer(MOCK, &request(&body)).await.unwrap();
        }
        let kept = lines(&folder.path().join(format!("{OUTBOX_FILE_NAME}.1")));
        let current = lines(outbox.path());
        assert!(!kept.is_empty() && !current.is_empty());
        assert!(std::fs::metadata(outbox.path()).unwrap().len() <= 200);
        assert_eq!(current.last().unwrap()["index"], 4);
    }

    #[tokio::test]
    async fn concurrent_sends_never_interleave() {
        let folder = tempfile::tempdir().unwrap();
        let outbox = Arc::new(HostOutbox::new(
            outbox_path(folder.path()),
            MAX_OUTBOX_BYTES,
        ));
        let sends = (0..64).map(|index| {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                let body = json!({"index": index, "content": "x".repeat(4096)});
                outbox.answer(MOCK, &request(&body)).await.unwrap();
            })
        });
        for send in sends.collect::<Vec<_>>() {
            send.await.unwrap();
        }
        assert_eq!(lines(outbox.path()).len(), 64);
    }

    #[tokio::test]
    async fn a_failing_write_is_a_connector_error() {
        let folder = tempfile::tempdir().unwrap();
        let outbox = Arc::new(HostOutbox::new(
            folder.path().join("missing-folder").join(OUTBOX_FILE_NAME),
            MAX_OUTBOX_BYTES,
        ));
        let Err(error) = outbox.answer(MOCK, &request(&json!({}))).await else {
            panic!("the write did not fail")
        };
        assert!(
            error
                .message
                .starts_with("cannot append to the host outbox"),
            "{}",
            error.message
        );
    }
}
