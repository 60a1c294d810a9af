//! The answers the limits add to every API route, in the OpenAPI document: `503
//! server.overloaded` and `server.timeout` everywhere, `connector.busy` where a route sends,
//! `408 request.timeout` where a route reads a body.

use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

/// The routes that send through a connector (and so may meet `--max-vendor-concurrency`).
const SENDING_ROUTES: &[&str] = &[
    "/api/messages",
    "/api/verification-codes",
    "/api/connectors/{id}/test",
];

pub struct LimitResponses;

impl Modify for LimitResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let sends = SENDING_ROUTES.contains(&path.as_str());
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                let mut unavailable = "`server.overloaded`: more requests in progress than `--max-in-flight`, refused at once (`Retry-After`); `server.timeout`: no answer within `--api-request-timeout-secs` (the work goes on and is logged)".to_owned();
                if sends {
                    unavailable.push_str("; `connector.busy`: the connector has `--max-vendor-concurrency` sends in progress (`Retry-After`)");
                }
                match responses.get_mut("503") {
                    Some(RefOr::T(existing)) => {
                        existing.description = format!("{}; {unavailable}", existing.description);
                    }
                    _ => {
                        responses.insert("503".to_owned(), error_response(&unavailable));
                    }
                }
                if operation.request_body.is_some() {
                    responses.entry("408".to_owned()).or_insert_with(|| {
                        error_response("`request.timeout`: the body did not arrive within `--body-read-timeout-secs`; the connection is closed")
                    });
                }
            }
        }
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}
