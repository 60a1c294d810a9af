//! The baseline of the `forward` scenario: what any service forwarding a message to an HTTP
//! SMS gateway does at least. An axum handler parses the same JSON body as
//! `POST /api/messages`, forwards `{to, type, payload}` as JSON with one pooled reqwest
//! client (rustls, as the host's) to the sink given as the only argument, checks for a 2xx and
//! answers the host's response shape. None of the host's work: no key check, no phone
//! validation, no flow control, no plugin, no log line. Prints `listening on http://ADDR`
//! first.

use std::io::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SendMessageBody {
    to: String,
    #[serde(rename = "type", default)]
    template_type: Option<String>,
    #[serde(default)]
    payload: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendMessageResponse {
    connector_id: &'static str,
    factory_id: &'static str,
}

struct Forwarder {
    client: reqwest::Client,
    sink_url: reqwest::Url,
}

async fn send_message(
    State(forwarder): State<Arc<Forwarder>>,
    Json(body): Json<SendMessageBody>,
) -> Result<Json<SendMessageResponse>, StatusCode> {
    let body = serde_json::to_vec(&body).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let response = forwarder
        .client
        .post(forwarder.sink_url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let status = response.status();
    // Read to the end, as the host does, so the connection goes back to the pool.
    response
        .bytes()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    if !status.is_success() {
        return Err(StatusCode::BAD_GATEWAY);
    }
    Ok(Json(SendMessageResponse {
        connector_id: "forwarder",
        factory_id: "forwarder",
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink_url = std::env::args()
        .nth(1)
        .ok_or("usage: bare-forwarder SINK_URL")?;
    let forwarder = Arc::new(Forwarder {
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?,
        sink_url: reqwest::Url::parse(&sink_url)?,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(
        listener,
        Router::new()
            .route("/api/messages", post(send_message))
            .with_state(forwarder),
    )
    .await?;
    Ok(())
}
