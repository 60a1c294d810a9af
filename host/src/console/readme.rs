//! A plugin's README as HTML the console can insert: Markdown rendered by pulldown-cmark, then
//! sanitized by ammonia, because the README comes from a vendor's file and is untrusted.
//!
//! What survives: headings, paragraphs, lists, tables, code, emphasis, quotes, links to http,
//! https and mailto (opened in a new tab, `rel="noopener noreferrer nofollow"`), and images
//! only when they are `data:` URIs. What goes: script and style elements, event handlers,
//! `style` attributes, forms, frames, `javascript:` and every other URL scheme, and images
//! from other hosts (the console makes no request beyond its own host). A URL's scheme is
//! decided as the browser decides it, by the WHATWG URL parser (`url`, as ammonia uses it):
//! control characters and spaces around it and tabs or newlines inside it do not hide a
//! `data:` or `javascript:` URL.

use std::borrow::Cow;
use std::collections::HashSet;

use pulldown_cmark::{html, Options, Parser};

/// The sanitized HTML of a README written in Markdown.
pub fn render_readme_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut unsafe_html = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut unsafe_html, Parser::new_ext(markdown, options));
    sanitize_html(&unsafe_html)
}

/// The schemes a README link may have.
const LINK_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// `value` parsed as browsers parse a URL (the WHATWG URL standard, which the `url` crate
/// implements): leading and trailing C0 controls and spaces stripped, tabs and newlines
/// removed anywhere, the scheme lower-cased. So `"\x01data:"` and `"da\tta:"` are `data:`
/// here as in the browser. `None` for a relative URL (refused: see `url_relative` below) or
/// one that does not parse.
fn parsed_url(value: &str) -> Option<ammonia::Url> {
    ammonia::Url::parse(value).ok()
}

fn sanitize_html(unsafe_html: &str) -> String {
    let mut builder = ammonia::Builder::default();
    builder
        // `data` only for images: the attribute filter holds links to `LINK_SCHEMES`.
        .url_schemes(HashSet::from(["http", "https", "mailto", "data"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .set_tag_attribute_value("a", "target", "_blank")
        // Links resolve against nothing: a relative link in a README cannot point into the
        // console's own routes.
        .url_relative(ammonia::UrlRelative::Deny)
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .add_tags(["input"])
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            // Images only from data: URIs (no request to another host), and only images.
            ("img", "src") => {
                let url = parsed_url(value)?;
                (url.scheme() == "data" && url.path().to_ascii_lowercase().starts_with("image/"))
                    .then_some(Cow::Borrowed(value))
            }
            // A data: link would open vendor-chosen content in a tab of our origin's opener.
            ("a", "href") => LINK_SCHEMES
                .contains(&parsed_url(value)?.scheme())
                .then_some(Cow::Borrowed(value)),
            ("input", "type") => (value == "checkbox").then_some(Cow::Borrowed(value)),
            _ => Some(Cow::Borrowed(value)),
        });
    builder.clean(unsafe_html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE_README: &str = r#"# Hostile <script>window.sentinel = 1</script>

<img src="x" onerror="window.sentinel = 2">

<a href="javascript:window.sentinel = 3">click me</a>

[markdown link](javascript:window.sentinel=4) and [spaced](  JavaScript:window.sentinel=5)

<svg onload="window.sentinel = 5"><script>window.sentinel = 6</script></svg>

<iframe src="https://example.com"></iframe>

<p style="background:url(https://203.0.113.9/x.png)" onclick="x()">styled</p>

![tracker](https://203.0.113.9/pixel.png)

![inline](data:image/png;base64,iVBORw0KGgo=)

<a href="data:text/html,<script>alert(1)</script>">data link</a>

<form action="https://example.com"><input type="text" name="q"></form>

| column | other |
|---|---|
| cell | `code` |

```json
{"templates": []}
```

[docs](https://example.com/docs) and [mail](mailto:ops@example.com)
"#;

    #[test]
    fn scripts_handlers_and_foreign_urls_are_removed() {
        let html = render_readme_html(HOSTILE_README);
        for forbidden in [
            "<script",
            "onerror",
            "onload",
            "onclick",
            "href=\"javascript",
            "href=\"JavaScript",
            "sentinel",
            "<iframe",
            "style=",
            "203.0.113.9",
            "data:text/html",
            "<form",
            "<svg",
        ] {
            assert!(
                !html.contains(forbidden),
                "{forbidden:?} survived in:\n{html}"
            );
        }
    }

    #[test]
    fn safe_markdown_survives() {
        let html = render_readme_html(HOSTILE_README);
        assert!(html.contains("<h1>Hostile "), "{html}");
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("<td><code>code</code></td>"), "{html}");
        assert!(html.contains("<pre><code>{\"templates\": []}"), "{html}");
        assert!(
            html.contains(
                "<a href=\"https://example.com/docs\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">docs</a>"
            ),
            "{html}"
        );
        assert!(html.contains("href=\"mailto:ops@example.com\""), "{html}");
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo=\""),
            "{html}"
        );
        assert!(html.contains("click me"), "link text stays: {html}");
    }

    /// Browsers strip leading C0 controls and spaces from a URL and remove tabs and newlines
    /// anywhere in it; a filter that only trims whitespace let these through as `data:` links.
    #[test]
    fn urls_are_judged_as_browsers_parse_them() {
        let payloads = [
            "\u{1}data:text/html,<script>alert(1)</script>",
            "da\tta:text/html,<script>alert(1)</script>",
            "data\n:text/html,<script>alert(1)</script>",
            "\u{1f} \u{8}DATA:text/html,<script>alert(1)</script>",
            "java\tscript:alert(1)",
            "\u{1}javascript:alert(1)",
            " \u{c}jav\r\nascript:alert(1)",
            "vbscript:msgbox(1)",
            "file:///etc/passwd",
        ];
        let entity_encoded = [
            "&#1;data:text/html,<script>alert(1)</script>",
            "&#x01;data:text/html,<script>alert(1)</script>",
            "da&Tab;ta:text/html,<script>alert(1)</script>",
            "da&#x09;ta:text/html,<script>alert(1)</script>",
            "da&#9;ta:text/html,<script>alert(1)</script>",
            "da&NewLine;ta:text/html,<script>alert(1)</script>",
            "java&Tab;script:alert(1)",
            "&#x1f;javascript:alert(1)",
        ];
        let mut readmes = Vec::new();
        for payload in payloads.iter().chain(&entity_encoded) {
            readmes.push(format!("<a href=\"{payload}\">raw html</a>"));
            readmes.push(format!(
                "<p><a href=\"{payload}\">raw html in a block</a></p>"
            ));
            readmes.push(format!("<img src=\"{payload}\">"));
            readmes.push(format!("[markdown link](<{payload}>)"));
            readmes.push(format!("![markdown image](<{payload}>)"));
        }
        for payload in &payloads {
            if !payload.contains(char::is_whitespace) {
                readmes.push(format!("[bare markdown link]({payload})"));
            }
        }
        for readme in &readmes {
            let html = render_readme_html(readme);
            assert!(
                !html.contains("href") && !html.contains("src="),
                "{readme:?} kept a URL: {html:?}"
            );
        }
        // What a link or an image may be is still allowed, whatever the case of the scheme.
        let html = render_readme_html(
            "[a](HTTPS://example.com/a) [b](mailto:ops@example.com) ![c](DATA:image/png;base64,iVBORw0KGgo=)",
        );
        assert!(html.contains("href=\"HTTPS://example.com/a\""), "{html}");
        assert!(html.contains("href=\"mailto:ops@example.com\""), "{html}");
        assert!(
            html.contains("src=\"DATA:image/png;base64,iVBORw0KGgo=\""),
            "{html}"
        );
    }

    #[test]
    fn relative_links_are_dropped() {
        let html = render_readme_html("[settings](/api/connectors) [up](../x)");
        assert!(!html.contains("href"), "{html}");
        assert!(html.contains("settings"), "{html}");
    }
}
