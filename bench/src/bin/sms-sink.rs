//! The SMS provider of the `forward` scenario: answers every `POST /sms` with `200` and a
//! small JSON receipt, as an HTTP SMS gateway does, after reading the body. One thread, so it
//! takes the same share of the two cores whichever server forwards to it. Prints
//! `listening on http://ADDR` first.

use std::io::Write;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

async fn accept_message(body: Bytes) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"id\":\"sink-{}\",\"status\":\"queued\"}}", body.len()),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, Router::new().route("/sms", post(accept_message))).await
}
