//! The baseline for `POST /api/messages`: a bare axum handler that parses the same JSON body
//! and answers the same shape, with none of the host's work (no key check, no phone
//! validation, no flow control, no plugin call). Prints `listening on http://ADDR` first.

use std::io::Write;

use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed, like the host parses it, then dropped
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
    provider_message_id: String,
}

async fn send_message(Json(body): Json<SendMessageBody>) -> Json<SendMessageResponse> {
    Json(SendMessageResponse {
        connector_id: "baseline",
        factory_id: "baseline",
        provider_message_id: format!("baseline-{}", body.to.len()),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(
        listener,
        Router::new().route("/api/messages", post(send_message)),
    )
    .await
}
