"""Schemathesis checks of our own for scripts/api-contract-test (loaded as its hooks file).

Schemathesis's `positive_data_acceptance` only sees statuses. Some operations refuse requests
that fit the document for reasons a JSON Schema cannot state (a factory id no plugin provides,
a config its plugin refuses, a phone number outside the numbering plans, a code that was never
sent): schemathesis.toml widens that check's statuses for exactly those operations. What must
still never happen is a request that fits the document being refused as malformed: that would
mean the document is looser than the host's parser. That is what
`schema_valid_requests_are_not_refused_as_malformed` checks, on every operation.
"""

import os

import schemathesis

# A refusal that names the rule, not the shape: `savedConnectorId` names a saved connector of
# another factory (a schema cannot say which ids belong to which factory).
CROSS_FIELD_REFUSALS = ("`savedConnectorId` ",)


def _error_code(response):
    try:
        body = response.json()
    except Exception:
        return None, None
    if not isinstance(body, dict):
        return None, None
    return body.get("code"), body.get("message", "")


@schemathesis.check
def schema_valid_requests_are_not_refused_as_malformed(ctx, response, case):
    """A request generated to fit the document is never answered `guard.invalid_input`."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code != 400:
        return None
    code, message = _error_code(response)
    if code == "guard.invalid_input" and not str(message).startswith(CROSS_FIELD_REFUSALS):
        raise AssertionError(
            "a request that fits the OpenAPI document was refused as malformed: the document "
            f"is looser than the host. The host said: {message}"
        )
    return None


if os.environ.get("API_CONTRACT_WITHOUT_KEY") == "1":

    @schemathesis.check
    def api_routes_answer_401_without_a_key(ctx, response, case):
        """Without a valid key, every /api route answers 401 auth.unauthorized."""
        if not case.path.startswith("/api/"):
            return None
        # A method the route does not take (Schemathesis's `unsupported_method` probe) is
        # answered 405 before any key is looked at: it names no resource.
        if case.method.upper() != case.operation.method.upper():
            return None
        code, _ = _error_code(response)
        if response.status_code != 401 or code != "auth.unauthorized":
            raise AssertionError(
                f"{case.method} {case.path} answered {response.status_code} {code!r} to a "
                "request without a valid key; every /api route must answer 401 auth.unauthorized"
            )
        return None
