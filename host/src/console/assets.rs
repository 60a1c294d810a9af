//! The console's files, embedded in the binary at build time (`include_str!`), so the host
//! serves its console with no build step, no CDN and no files beside the binary.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub contents: &'static str,
}

impl IntoResponse for Asset {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, self.content_type)], self.contents).into_response()
    }
}

macro_rules! embedded {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            contents: include_str!(concat!("assets/", $name)),
        }
    };
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The page itself, served at `/console`.
pub const INDEX_HTML: Asset = embedded!("index.html", "text/html; charset=utf-8");

/// Everything the page loads, served at `/console/assets/{name}`. The modules import each
/// other by these names.
pub const ASSETS: &[Asset] = &[
    embedded!("console.css", "text/css; charset=utf-8"),
    embedded!("favicon.svg", "image/svg+xml"),
    embedded!("sms-placeholder.svg", "image/svg+xml"),
    embedded!("app.js", JAVASCRIPT),
    embedded!("api.js", JAVASCRIPT),
    embedded!("dom.js", JAVASCRIPT),
    embedded!("modal.js", JAVASCRIPT),
    embedded!("sign-in-page.js", JAVASCRIPT),
    embedded!("connectors-page.js", JAVASCRIPT),
    embedded!("connector-actions.js", JAVASCRIPT),
    embedded!("factory-picker.js", JAVASCRIPT),
    embedded!("guide-page.js", JAVASCRIPT),
    embedded!("connector-details-page.js", JAVASCRIPT),
    embedded!("plugins-page.js", JAVASCRIPT),
    embedded!("plugin-changes.js", JAVASCRIPT),
    embedded!("page-refresh.js", JAVASCRIPT),
    embedded!("protection-page.js", JAVASCRIPT),
    embedded!("messages-page.js", JAVASCRIPT),
    embedded!("config-form.js", JAVASCRIPT),
    embedded!("json-editor.js", JAVASCRIPT),
    // CodeMirror 6 in one module (codemirror-build/README.md: versions, licences, build).
    embedded!("codemirror.js", JAVASCRIPT),
    embedded!("connector-tester.js", JAVASCRIPT),
];

/// The embedded file with this name.
pub fn find(name: &str) -> Option<Asset> {
    ASSETS.iter().copied().find(|asset| asset.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        let mut sources: Vec<Asset> = ASSETS.to_vec();
        sources.push(INDEX_HTML);
        for source in sources {
            for imported in imported_asset_names(source.contents) {
                assert!(
                    find(imported).is_some(),
                    "{} refers to {imported}, which is not embedded",
                    source.name
                );
            }
        }
        assert!(ASSETS
            .iter()
            .filter(|asset| asset.name.ends_with(".js"))
            .all(|asset| asset.content_type == JAVASCRIPT));
    }

    /// The `./name.js` and `/console/assets/name` references in a file.
    fn imported_asset_names(contents: &str) -> Vec<&str> {
        let mut names = Vec::new();
        for marker in ["from './", "/console/assets/"] {
            let mut rest = contents;
            while let Some(start) = rest.find(marker) {
                rest = &rest[start + marker.len()..];
                let end = rest.find(['\'', '"']).unwrap_or(rest.len());
                names.push(&rest[..end]);
            }
        }
        names
    }

    #[test]
    fn no_asset_carries_inline_script_or_handlers() {
        // The Content-Security-Policy forbids inline script; an inline handler would silently
        // not run, so none may be written.
        let html = INDEX_HTML.contents;
        assert!(!html.contains("<script>"), "inline script in index.html");
        for attribute in [" onclick=", " onload=", " onerror=", " style="] {
            assert!(!html.contains(attribute), "{attribute} in index.html");
        }
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            assert!(
                !asset.contents.contains("innerHTML") || asset.name == "dom.js",
                "{} sets innerHTML; only dom.js may, for the server-sanitized README",
                asset.name
            );
            assert!(
                !asset.contents.contains("eval("),
                "{} calls eval",
                asset.name
            );
        }
    }
}
