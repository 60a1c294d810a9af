//! The admin console: a single page served from assets embedded in the binary (no Node
//! toolchain, no CDN, works offline), which drives the same `/api` routes as every client.
//!
//! # Layout
//! - [`assets`]: the embedded files (HTML, CSS, one ES module per screen) and their types.
//! - [`readme`]: a plugin's README, Markdown rendered to HTML and sanitized on the server.
//!
//! Everything a plugin supplies is untrusted here: the README is sanitized by [`readme`]
//! before the page inserts it, and the page sets every other vendor string as text. The
//! headers below forbid inline script, so markup that slipped through could still not run.

pub mod assets;
pub mod readme;

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api_error::ApiError;
use crate::state::AppState;

/// No inline script or style, nothing from another origin, no framing.
pub const CONSOLE_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The one style attribute the code editor (CodeMirror) sets, `tab-size: 2`, allowed by its
/// hash and nothing else.
const EDITOR_STYLE_ATTRIBUTE_HASH: &str = "sha256-JjmzATH9KF/Wi05nFatGZa8quigYj7/QekWVSag0+mg=";

/// The page's policy: [`CONSOLE_CONTENT_SECURITY_POLICY`], plus a nonce, fresh for each
/// response, for the one `<style>` element CodeMirror writes its theme into (a document, unlike
/// a shadow root, gets no constructable style sheets from it), and the editor's style
/// attribute by hash. Still no inline script, and no other inline style.
fn page_content_security_policy(style_nonce: &str) -> String {
    format!(
        "{CONSOLE_CONTENT_SECURITY_POLICY}; style-src 'self' 'nonce-{style_nonce}'; \
         style-src-attr 'unsafe-hashes' '{EDITOR_STYLE_ATTRIBUTE_HASH}'"
    )
}

/// 128 random bits, base64.
fn new_style_nonce() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `GET /` (redirects), `GET /console` and `GET /console/assets/{file}`, each with the
/// console's security headers. No key is needed to load the page: it holds no data, and
/// signs in by asking for the admin key.
pub fn console_router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(redirect_to_console))
        .route("/console", get(console_page))
        .route("/console/", get(redirect_to_console))
        .route("/console/assets/{file}", get(console_asset))
        // The page sets its own (with its style nonce); every other answer gets the base one.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONSOLE_CONTENT_SECURITY_POLICY),
        ))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        // Embedded assets change with the binary; revalidating costs one small request.
        .layer(security_header(header::CACHE_CONTROL, "no-cache"))
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

async fn redirect_to_console() -> Redirect {
    Redirect::to("/console")
}

async fn console_page() -> Result<Response, ApiError> {
    let nonce = new_style_nonce()
        .map_err(|error| ApiError::Internal(format!("no random bytes for a nonce: {error}")))?;
    let policy = HeaderValue::from_str(&page_content_security_policy(&nonce))
        .map_err(|error| ApiError::Internal(format!("content security policy: {error}")))?;
    let html = assets::INDEX_HTML
        .contents
        .replace("{{style-nonce}}", &nonce);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(assets::INDEX_HTML.content_type),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
        ],
        html,
    )
        .into_response())
}

async fn console_asset(Path(file_name): Path<String>) -> Result<Response, ApiError> {
    assets::find(&file_name)
        .map(|asset| asset.into_response())
        .ok_or(ApiError::NotFound {
            entity: "console asset",
            id: file_name,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_gets_its_own_style_nonce_and_still_no_inline_script() {
        let first = new_style_nonce().unwrap();
        let second = new_style_nonce().unwrap();
        assert_ne!(first, second);
        assert_eq!(first.len(), 24, "128 bits in base64: {first}");
        let policy = page_content_security_policy(&first);
        assert!(
            policy.contains(&format!("style-src 'self' 'nonce-{first}'")),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(HeaderValue::from_str(&policy).is_ok());
        assert!(assets::INDEX_HTML.contents.contains("{{style-nonce}}"));
    }
}
