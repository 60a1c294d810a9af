//! What the OpenAPI document says beyond what utoipa derives from the handlers and types:
//!
//! - every error response of every operation, with the `code` values it can carry, built
//!   from [`ApiError`] itself (its status, code and message), so a status or code cannot
//!   differ from what the host answers;
//! - OpenAPI links from the responses that return an id to the operations that take it
//!   ([`add_operation_links`], on the serialized document);
//! - the schema of Logto's usage types ([`UsageType`]), which live in plugin-api, a crate
//!   that knows nothing of utoipa;
//! - the schema of a client's IP address ([`ClientIp`]): IPv4 or IPv6, which no one format
//!   states.
//!
//! Which failures each operation can meet is the one thing written by hand here, in
//! [`failures_of`]; a unit test refuses an `/api` operation it does not list, and the
//! Schemathesis run (`scripts/api-contract-test`) holds the running host to all of it.

use std::collections::BTreeMap;

use plugin_api::{ConnectorError, ConnectorErrorCode, TemplateType};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use crate::api_error::ApiError;
use crate::store::VerifyOutcome;

/// Logto's usage types (`TemplateType::ALL`): a message's template, a code's scope.
pub struct UsageType;

impl utoipa::PartialSchema for UsageType {
    fn schema() -> RefOr<Schema> {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(TemplateType::ALL.iter().map(|usage| usage.as_str())))
                .description(Some(
                    "Logto's usage type: picks the template (a connector falls back to its \
                     `Generic` one) and scopes a verification code.",
                ))
                .build(),
        )
        .into()
    }
}

impl utoipa::ToSchema for UsageType {}

/// The end user's IP address a sender passes along (Logto's `ip`): what std's `IpAddr`
/// parses, IPv4 or IPv6 (`request_fields::ip_address_when_present`).
pub struct ClientIp;

impl utoipa::PartialSchema for ClientIp {
    fn schema() -> RefOr<Schema> {
        let address = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        Schema::AnyOf(
            AnyOfBuilder::new()
                .item(address(KnownFormat::Ipv4))
                .item(address(KnownFormat::Ipv6))
                .description(Some(
                    "The IP address of the end user the message is for, as Logto passes it \
                     (IPv4, or IPv6 without a zone; an IPv4-mapped IPv6 address counts as its \
                     IPv4 address). Optional; anything else is refused with \
                     `400 guard.invalid_input`. It is personal data: the host does not log it.",
                ))
                .examples(["203.0.113.7", "2001:db8::7"])
                .build(),
        )
        .into()
    }
}

impl utoipa::ToSchema for ClientIp {}

/// One way an operation fails, and when.
struct Failure {
    error: ApiError,
    when: &'static str,
}

fn failure(error: ApiError, when: &'static str) -> Failure {
    Failure { error, when }
}

fn without_a_valid_key() -> Failure {
    failure(
        ApiError::Unauthorized,
        "no `Authorization: Bearer` key, or a key this host does not know",
    )
}

fn admin_route() -> Vec<Failure> {
    vec![
        without_a_valid_key(),
        failure(ApiError::Forbidden, "a send key on an admin route"),
    ]
}

fn malformed(example_message: &str, when: &'static str) -> Failure {
    failure(
        ApiError::InvalidRequestBody(example_message.to_owned()),
        when,
    )
}

fn with_a_body() -> Vec<Failure> {
    vec![
        malformed(
            "Failed to deserialize the JSON body into the target type: connectorId: must not be empty at line 1 column 17",
            "the body is not the JSON object this operation takes (syntax, `Content-Type`, a \
             missing or unknown field, a value of the wrong type or out of its range)",
        ),
        failure(
            ApiError::PayloadTooLarge {
                limit_bytes: crate::http::limits::MAX_REQUEST_BODY_BYTES,
            },
            "the body is over 64 KiB",
        ),
        failure(
            ApiError::BodyReadTimedOut { limit_secs: 10 },
            "the body did not arrive within `--body-read-timeout-secs`; the connection is closed",
        ),
    ]
}

/// What the limits at the HTTP edge (`crate::http`) answer on every API route.
fn edge_limits() -> Vec<Failure> {
    vec![
        failure(
            ApiError::Overloaded { max_in_flight: 256 },
            "more API requests in progress than `--max-in-flight`: refused at once, never \
             queued; retry after `Retry-After`",
        ),
        failure(
            ApiError::RequestTimedOut { limit_secs: 25 },
            "no answer within `--api-request-timeout-secs`; the work goes on to its end and its \
             outcome is logged",
        ),
    ]
}

fn with_a_path_id() -> Failure {
    malformed(
        "Invalid URL: Cannot parse `%FF` to a `String`",
        "the id in the path is not UTF-8 once percent-decoded",
    )
}

fn connector_unavailable() -> Failure {
    failure(
        ApiError::ConnectorUnavailable {
            connector_id: "6wb24mwyos70".to_owned(),
            reason: "the saved config of connector \"6wb24mwyos70\" is sealed under secrets key 1f2e3d4c5b6a7980, which this host's key file does not hold (...)".to_owned(),
        },
        "this host cannot open the connector's saved config: it is sealed under a secrets key \
         its key file lacks (a key rotation it was left out of: restart it with the new key \
         file), or it was not sealed by a host (written to the database directly); nothing is \
         sent through it",
    )
}

fn store_unavailable() -> Failure {
    failure(
        ApiError::StoreUnavailable(String::new()),
        "a shared store (PostgreSQL) cannot be reached now; retry after `Retry-After`",
    )
}

fn connector_not_found() -> Failure {
    failure(
        ApiError::NotFound {
            entity: "connector",
            id: "6wb24mwyos70".to_owned(),
        },
        "no saved connector has this id",
    )
}

fn factory_not_found(when: &'static str) -> Failure {
    failure(
        ApiError::FactoryNotFound {
            factory_id: "non-exist-id".to_owned(),
        },
        when,
    )
}

fn invalid_phone_number() -> Failure {
    failure(
        ApiError::InvalidPhoneNumber("\"12345\" is not a valid phone number".to_owned()),
        "the phone number is refused by `--phone-validation` (see the `PhoneNumber` schema)",
    )
}

fn country_not_allowed() -> Failure {
    failure(
        ApiError::CountryNotAllowed {
            region: "DE".to_owned(),
        },
        "the number's country is not in `--allowed-countries`",
    )
}

fn recipient_limit() -> Failure {
    failure(
        ApiError::RateLimited {
            retry_after_secs: 540,
        },
        "this recipient had its successful sends for the window (`Retry-After`)",
    )
}

fn protection_block() -> Failure {
    failure(
        ApiError::Blocked {
            reason: "low_conversion",
            retry_after_secs: Some(600),
            block_id: "9f2c4e1a7b3d5f60".to_owned(),
            message: "Sending to this number is paused: the prefix +1201555 converts too few codes (3 of 40 verified); retry in 600 s".to_owned(),
        },
        "an SMS-pumping protection layer blocks this send (nothing was sent): `data.reason` is \
         `ip_velocity`, `prefix_velocity`, `low_conversion`, `first_seen_country`, `budget` or \
         `recipient_backoff`; `data.retryAfterSeconds` and `Retry-After` when it lifts by \
         itself, `data.blockId` the block an admin can lift (`DELETE /api/protection/blocks/{id}`)",
    )
}

/// Every error a connector can return, with the status it gets: `during_test` when the
/// config is the client's (a config under test), else the saved config is the operator's.
fn connector_errors(during_test: bool) -> Vec<Failure> {
    ConnectorErrorCode::ALL
        .into_iter()
        .map(|code| {
            let when = if code == ConnectorErrorCode::InvalidConfig && during_test {
                "the plugin refuses the config; `data.errors` lists each field and why"
            } else {
                "the connector refused or failed (Logto's connector error codes)"
            };
            failure(
                ApiError::Connector {
                    error: ConnectorError::new(code, format!("the connector answered {code}")),
                    during_test,
                },
                when,
            )
        })
        .collect()
}

/// What a send can meet, through the live connector or (`config_under_test`) through a
/// config the client is testing.
fn sending_failures(config_under_test: bool) -> Vec<Failure> {
    let mut failures = vec![
        invalid_phone_number(),
        country_not_allowed(),
        // A console test has its own budget instead of the recipients' limits.
        if config_under_test {
            failure(
                ApiError::ConsoleTestsLimited {
                    retry_after_secs: 300,
                },
                "the console's tests used their budget for the window (`Retry-After`)",
            )
        } else {
            recipient_limit()
        },
        failure(
            ApiError::ConnectorBusy {
                connector_id: "twilio-7f3a".to_owned(),
                limit: 128,
            },
            "the connector has `--max-vendor-concurrency` sends in progress (its provider is \
             slow); retry after `Retry-After`",
        ),
        failure(
            ApiError::Upstream(
                "could not connect to the SMS provider at api.example.com:443: connection refused"
                    .to_owned(),
            ),
            "the provider could not be reached (connection, DNS or TLS): nothing was sent, \
             `data.providerContacted` is false and sending again is safe",
        ),
        failure(
            ApiError::OutcomeUnknown(
                "the SMS provider at api.example.com:443 did not answer within 10 s; it may have \
                 accepted the message"
                    .to_owned(),
            ),
            "the request reached the provider and no whole answer came back: the message may \
             have been accepted (`data.providerContacted` is true; a verification code stays \
             valid and the recipient's slot stays taken). Do not send again before checking",
        ),
    ];
    failures.extend(connector_errors(config_under_test));
    if !config_under_test {
        // Console tests have their own budget; the protection layers guard real sends.
        failures.push(protection_block());
        failures.push(failure(
            ApiError::NoLiveConnector("no SMS connector is live".to_owned()),
            "no connector is live, or the live one's plugin is not loaded or refuses its config",
        ));
    }
    failures
}

/// The failures an operation can meet, by operation id; `None` for an operation the table
/// does not know (a unit test refuses any such `/api` operation).
fn failures_of(operation_id: &str) -> Option<Vec<Failure>> {
    let mut failures = match operation_id {
        "get_openapi_document" | "list_connector_factories" | "list_plugin_files" => admin_route(),
        "get_connector_factory" | "get_connector_factory_readme" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(failure(
                ApiError::NotFound {
                    entity: "connector factory",
                    id: "non-exist-id".to_owned(),
                },
                "no loaded plugin provides this factory",
            ));
            failures
        }
        "list_messages" => {
            let mut failures = admin_route();
            failures.push(malformed(
                "status \"arrived\" is none of queued, sent, delivered, undelivered, failed, unknown",
                "`status`, `since` or `limit` out of its range, or an unknown query parameter",
            ));
            failures.push(store_unavailable());
            failures
        }
        "get_message_summary" => {
            let mut failures = admin_route();
            failures.push(malformed(
                "since is a time in milliseconds since the epoch: 0 to 9007199254740991",
                "`since` out of its range, or not a number",
            ));
            failures.push(store_unavailable());
            failures
        }
        "get_message" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(failure(
                ApiError::NotFound {
                    entity: "message",
                    id: "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b".to_owned(),
                },
                "no such message, or it is past --message-retention-days",
            ));
            failures.push(store_unavailable());
            failures
        }
        "get_protection" => {
            let mut failures = admin_route();
            failures.push(malformed(
                "unknown reason \"pumping\": use one of ip_velocity, prefix_velocity, low_conversion, first_seen_country, budget, recipient_backoff",
                "`reason` or `kind` is not one the host knows, or an unknown query parameter",
            ));
            failures
        }
        "lift_block" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(failure(
                ApiError::NotFound {
                    entity: "protection block",
                    id: "9f2c4e1a7b3d5f60".to_owned(),
                },
                "no block in force has this id (it ended, was lifted, or never existed)",
            ));
            failures
        }
        "allow_country" => {
            let mut failures = admin_route();
            failures.push(malformed(
                "\"usa\" is not a region: use an ISO 3166 alpha-2 code in uppercase, such as US",
                "the region is not two uppercase letters",
            ));
            failures
        }
        "rescan_plugin_files" => {
            let mut failures = admin_route();
            failures.push(failure(
                ApiError::Internal("cannot read the plugins folder".to_owned()),
                "the plugins folder cannot be read",
            ));
            failures
        }
        "list_connectors" => {
            let mut failures = admin_route();
            failures.push(malformed(
                "Failed to deserialize query string: enabled: provided string was not `true` or `false`",
                "`enabled` is not `true` or `false`, or an unknown query parameter",
            ));
            failures.push(connector_unavailable());
            failures.push(store_unavailable());
            failures
        }
        "create_connector" => {
            let mut failures = admin_route();
            failures.extend(with_a_body());
            failures.push(factory_not_found(
                "no loaded plugin provides `connectorId` (looked up before the config is read)",
            ));
            failures.push(failure(
                ApiError::from_config_under_test(ConnectorError::invalid_config(
                    "templates: missing field",
                )),
                "the plugin refuses the config; `data.errors` lists each field and why",
            ));
            failures.push(store_unavailable());
            failures
        }
        "get_connector" | "delete_connector" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(connector_not_found());
            if operation_id == "get_connector" {
                failures.push(connector_unavailable());
            }
            failures.push(store_unavailable());
            failures
        }
        "update_connector" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.extend(with_a_body());
            failures.push(connector_not_found());
            failures.push(factory_not_found(
                "no loaded plugin provides the connector's factory",
            ));
            failures.push(failure(
                ApiError::from_config_under_test(ConnectorError::invalid_config(
                    "templates: missing field",
                )),
                "the plugin refuses the config, or `******` stands where no secret is saved or \
                 in front of a changed destination",
            ));
            failures.push(failure(
                ApiError::ChangedConcurrently {
                    id: "6wb24mwyos70".to_owned(),
                },
                "the connector kept changing (other hosts) while this change was made",
            ));
            failures.push(connector_unavailable());
            failures.push(store_unavailable());
            failures
        }
        "enable_connector" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(connector_not_found());
            failures.push(factory_not_found(
                "no loaded plugin provides the connector's factory",
            ));
            // The plugin builds the saved config; whatever it answers is passed on.
            failures.extend(connector_errors(true));
            failures.push(connector_unavailable());
            failures.push(store_unavailable());
            failures
        }
        "set_fallback" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(connector_not_found());
            failures.push(failure(
                ApiError::FallbackIsLive {
                    id: "6wb24mwyos70".to_owned(),
                },
                "the connector is the live one: the fallback must be a previous connector",
            ));
            failures.push(factory_not_found(
                "no loaded plugin provides the connector's factory",
            ));
            // The plugin builds the saved config; whatever it answers is passed on.
            failures.extend(connector_errors(true));
            failures.push(connector_unavailable());
            failures.push(store_unavailable());
            failures
        }
        "clear_fallback" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.push(connector_not_found());
            failures.push(connector_unavailable());
            failures.push(store_unavailable());
            failures
        }
        "test_connector_config" => {
            let mut failures = admin_route();
            failures.push(with_a_path_id());
            failures.extend(with_a_body());
            failures.push(malformed(
                "`savedConnectorId` \"6wb24mwyos70\" belongs to the factory \"http-sms\", not \"mock-short-message-service\"",
                "`savedConnectorId` belongs to another factory",
            ));
            failures.push(factory_not_found("no loaded plugin provides this factory"));
            failures.push(failure(
                ApiError::NotFound {
                    entity: "connector",
                    id: "6wb24mwyos70".to_owned(),
                },
                "`savedConnectorId` does not exist",
            ));
            failures.extend(sending_failures(true));
            failures.push(store_unavailable());
            failures
        }
        "send_message" => {
            let mut failures = vec![without_a_valid_key()];
            failures.extend(with_a_body());
            failures.extend(sending_failures(false));
            failures.push(connector_unavailable());
            failures.push(store_unavailable());
            failures
        }
        "issue_code" => {
            let mut failures = vec![without_a_valid_key()];
            failures.extend(with_a_body());
            failures.extend(sending_failures(false));
            failures.push(connector_unavailable());
            failures.push(failure(
                ApiError::ResendCooldown {
                    retry_after_secs: 42,
                },
                "a code of this type went to this recipient within `--resend-cooldown-secs` \
                 (`Retry-After`)",
            ));
            failures.push(store_unavailable());
            failures
        }
        "verify_code" => {
            let mut failures = vec![without_a_valid_key()];
            failures.extend(with_a_body());
            failures.push(invalid_phone_number());
            for (outcome, when) in [
                (
                    VerifyOutcome::NotFound,
                    "no code is pending for this phone and type (never sent, used, or replaced)",
                ),
                (
                    VerifyOutcome::Expired,
                    "the code is older than `--code-ttl-secs`",
                ),
                (
                    VerifyOutcome::ExceededMaxTry,
                    "too many wrong attempts (`--code-max-attempts`); ask for a new code",
                ),
                (
                    VerifyOutcome::Mismatch { attempts_left: 9 },
                    "the code is wrong; `data.attemptsLeft` says how many tries remain",
                ),
            ] {
                failures.push(failure(ApiError::Verification(outcome), when));
            }
            failures.push(store_unavailable());
            failures
        }
        _ => return None,
    };
    failures.extend(edge_limits());
    // One code once per status: the first reason given for it stands.
    let mut seen = std::collections::BTreeSet::new();
    failures.retain(|failure| seen.insert((failure.error.status(), failure.error.code())));
    Some(failures)
}

/// The error responses of one operation, a response per status: `ErrorBody` with `code`
/// narrowed to the codes this operation answers with that status, an example per code.
fn error_responses(failures: &[Failure]) -> BTreeMap<String, Response> {
    let mut by_status: BTreeMap<u16, Vec<&Failure>> = BTreeMap::new();
    for failure in failures {
        by_status
            .entry(failure.error.status().as_u16())
            .or_default()
            .push(failure);
    }
    by_status
        .into_iter()
        .map(|(status, failures)| {
            let codes: Vec<String> = failures
                .iter()
                .map(|failure| failure.error.code())
                .collect();
            let description = failures
                .iter()
                .map(|failure| format!("`{}`: {}.", failure.error.code(), failure.when))
                .collect::<Vec<_>>()
                .join("\n\n");
            let schema = AllOfBuilder::new()
                .item(Ref::from_schema_name("ErrorBody"))
                .item(
                    ObjectBuilder::new().property(
                        "code",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(codes.iter().map(String::as_str))),
                    ),
                )
                .build();
            let examples = failures.iter().map(|failure| {
                (
                    failure.error.code(),
                    ExampleBuilder::new()
                        .summary(failure.when)
                        .value(Some(example_body(&failure.error)))
                        .build(),
                )
            });
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Schema::AllOf(schema)))
                    .examples_from_iter(examples)
                    .build(),
            );
            if status == 429 || status == 502 || status == 503 {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(0)),
                        )
                        .description(Some(
                            "Seconds to wait: on a refusal by flow control, an unavailable \
                             store, or a connector error whose provider asked callers to wait \
                             (its own `Retry-After`, also in `data.retryAfterSeconds`)",
                        ))
                        .build(),
                );
            }
            (status.to_string(), response.build())
        })
        .collect()
}

/// The body the host answers for `error`, as [`ApiError`]'s `IntoResponse` builds it.
fn example_body(error: &ApiError) -> serde_json::Value {
    let mut body = serde_json::json!({ "code": error.code(), "message": error.to_string() });
    match error {
        ApiError::Connector { error, .. } if error.code == ConnectorErrorCode::InvalidConfig => {
            body["data"] = serde_json::json!({"errors": [
                {"field": "templates", "message": "missing field `templates`"}
            ]});
        }
        ApiError::RateLimited { retry_after_secs }
        | ApiError::ResendCooldown { retry_after_secs }
        | ApiError::ConsoleTestsLimited { retry_after_secs } => {
            body["data"] = serde_json::json!({ "retryAfterSeconds": retry_after_secs });
        }
        ApiError::Verification(VerifyOutcome::Mismatch { attempts_left }) => {
            body["data"] = serde_json::json!({ "attemptsLeft": attempts_left });
        }
        ApiError::Connector { error, .. }
            if error.code == ConnectorErrorCode::RateLimitExceeded =>
        {
            body["data"] = serde_json::json!({ "retryAfterSeconds": 30 });
        }
        ApiError::Blocked { .. } => body["data"] = error.blocked_data(),
        ApiError::Upstream(_) => body["data"] = serde_json::json!({ "providerContacted": false }),
        ApiError::OutcomeUnknown(_) => {
            body["data"] = serde_json::json!({ "providerContacted": true })
        }
        _ => {}
    }
    body
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.patch,
        &mut item.delete,
        &mut item.put,
    ]
    .into_iter()
    .flatten()
}

/// Replaces every error response the handlers' attributes give with the ones
/// [`failures_of`] lists, so the statuses and codes have one source.
pub struct DocumentedErrors;

impl utoipa::Modify for DocumentedErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let Some(failures) = operation.operation_id.as_deref().and_then(failures_of) else {
                    continue;
                };
                let responses = &mut operation.responses.responses;
                responses.retain(|status, _| !status.starts_with('4') && !status.starts_with('5'));
                for (status, response) in error_responses(&failures) {
                    responses.insert(status, RefOr::T(response));
                }
            }
        }
    }
}

/// (operation id, its success status, link name, target operation id, parameter → runtime
/// expression): the ids a response hands out and the operations that take them.
const LINKS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "create_connector",
        "200",
        "GetConnector",
        "get_connector",
        "$response.body#/id",
    ),
    (
        "create_connector",
        "200",
        "UpdateConnector",
        "update_connector",
        "$response.body#/id",
    ),
    (
        "create_connector",
        "200",
        "DeleteConnector",
        "delete_connector",
        "$response.body#/id",
    ),
    (
        "create_connector",
        "200",
        "EnableConnector",
        "enable_connector",
        "$response.body#/id",
    ),
    (
        "list_connector_factories",
        "200",
        "GetConnectorFactory",
        "get_connector_factory",
        "$response.body#/0/id",
    ),
    (
        "list_connector_factories",
        "200",
        "TestConnectorConfig",
        "test_connector_config",
        "$response.body#/0/id",
    ),
];

/// Adds the OpenAPI links from the responses that hand out an id to the operations that take
/// it, to the serialized document: utoipa's attributes have no syntax for links, and its
/// `Link` type serializes its fields in snake case (`operation_id`), which OpenAPI tools do
/// not read.
pub fn add_operation_links(document: &mut serde_json::Value) {
    let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let operation_id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for (source, status, name, target, expression) in LINKS {
                if *source != operation_id {
                    continue;
                }
                let Some(response) = operation
                    .get_mut("responses")
                    .and_then(|responses| responses.get_mut(*status))
                    .and_then(serde_json::Value::as_object_mut)
                else {
                    continue;
                };
                let description = if expression.contains("/0/") {
                    format!("`{target}` with the `id` of the first item")
                } else {
                    format!("`{target}` with the returned `id`")
                };
                let links = response
                    .entry("links")
                    .or_insert_with(|| serde_json::json!({}));
                links[*name] = serde_json::json!({
                    "operationId": target,
                    "parameters": { "id": expression },
                    "description": description,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        crate::api_doc::document_for(crate::phone::PhoneValidation::Strict).unwrap()
    }

    #[test]
    fn every_api_operation_documents_its_failures() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let operation_id = operation["operationId"].as_str().unwrap();
                if path.starts_with("/api/") {
                    assert!(
                        failures_of(operation_id).is_some(),
                        "{method} {path}: add `{operation_id}` to failures_of"
                    );
                    assert!(
                        operation["responses"]["401"]["content"]["application/json"]["examples"]
                            ["auth.unauthorized"]
                            .is_object(),
                        "{method} {path} lacks its 401"
                    );
                }
                for (status, response) in operation["responses"].as_object().unwrap() {
                    // `/health` and `/ready` answer their own bodies, not the error type.
                    if status.starts_with('2') || path == "/health" || path == "/ready" {
                        continue;
                    }
                    let content = &response["content"]["application/json"];
                    let codes = content["schema"]["allOf"][1]["properties"]["code"]["enum"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{method} {path} {status}: no codes"));
                    for code in codes {
                        let code = code.as_str().unwrap();
                        assert_eq!(
                            content["examples"][code]["value"]["code"], code,
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn statuses_and_codes_come_from_the_error_type() {
        let document = document();
        let create = &document["paths"]["/api/connectors"]["post"]["responses"];
        let codes = |status: &str| {
            create[status]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
                ["code"]["enum"]
                .clone()
        };
        assert_eq!(
            codes("400"),
            serde_json::json!(["guard.invalid_input", "connector.invalid_config"])
        );
        assert_eq!(
            codes("422"),
            serde_json::json!(["connector.not_found_with_connector_id"])
        );
        assert!(create["413"].is_object() && create["503"].is_object());
        let send = &document["paths"]["/api/messages"]["post"]["responses"];
        // The saved config is the operator's: refused at send time, it is a 502, not a 400.
        let bad_gateway = send["502"]["content"]["application/json"]["schema"]["allOf"][1]
            ["properties"]["code"]["enum"]
            .as_array()
            .unwrap();
        assert!(bad_gateway.contains(&serde_json::json!("connector.invalid_config")));
        assert!(send["403"].is_null(), "a send key may send");
        assert!(send["429"]["headers"]["Retry-After"].is_object());
    }

    #[test]
    fn links_lead_from_returned_ids_to_the_operations_that_take_them() {
        let document = document();
        let operation_ids: Vec<String> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|operation| operation["operationId"].as_str().unwrap().to_owned())
            .collect();
        for (source, status, name, target, _) in LINKS {
            assert!(operation_ids.contains(&(*target).to_owned()), "{target}");
            let found = document["paths"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|item| item.as_object().unwrap().values())
                .find(|operation| operation["operationId"] == *source)
                .unwrap();
            assert_eq!(
                found["responses"][status]["links"][name]["operationId"], *target,
                "{source} → {target}"
            );
        }
    }
}
