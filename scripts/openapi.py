#!/usr/bin/env python3
"""Writes docs/openapi.json, the OpenAPI 3.1 description of deprovd's HTTP API.

The document is data kept beside the code: `deprovd` serves the checked-in file at
/v1/openapi.json, and the suite checks that it equals this script's output, that every route of
the router is in it, that openapi-spec-validator accepts it, and that schemathesis finds no 5xx and
no answer that breaks it against a running server. Edit here, run `python3 scripts/openapi.py`.
"""
import json
import pathlib
import sys

STATES = ["planned", "awaiting_approval", "running", "succeeded", "failed", "skipped",
          "cancelled", "restored"]
OPERATIONS = ["disable_account", "enable_account", "revoke_sessions", "revoke_tokens",
              "remove_group_memberships", "restore_group_memberships", "reset_credentials",
              "contain_host", "lift_containment", "notify"]


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required, props, extra=True):
    o = {"type": "object", "required": required, "properties": props}
    if not extra:
        o["additionalProperties"] = False
    return o


S = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
NSTR = {"type": ["string", "null"]}
NTIME = {"type": ["string", "null"], "format": "date-time"}
UINT = {"type": "integer", "minimum": 0}

schemas = {
    "Error": obj(["code", "message"], {"code": S, "message": S}),
    "Operation": {"type": "string", "enum": OPERATIONS},
    "ActionState": {"type": "string", "enum": STATES},
    "Action": obj(
        ["key", "origin", "rule", "subject", "connector", "operation", "state", "attempts",
         "created_at", "updated_at"],
        {"key": S, "origin": {"type": "object", "required": ["kind"],
                              "properties": {"kind": {"type": "string",
                                                      "enum": ["alert", "manual"]}}},
         "rule": S, "policy_digest": S, "subject": S, "connector": S,
         "operation": ref("Operation"), "reason": S, "state": ref("ActionState"),
         "attempts": UINT, "next_attempt_at": NTIME, "last_error": NSTR, "note": NSTR,
         "requested_by": NSTR, "expires_at": NTIME, "created_at": TIME, "updated_at": TIME}),
    "Actions": obj(["actions"], {"actions": {"type": "array", "items": ref("Action")}}),
    "ActionSummary": obj(["key", "connector", "operation", "state"],
                         {"key": S, "connector": S, "operation": ref("Operation"),
                          "state": ref("ActionState"), "note": NSTR}),
    "LockoutRequest": obj(
        ["subject", "reason"],
        {"subject": S, "reason": S,
         "connectors": {"type": "array", "items": S},
         "operations": {"type": "array", "items": ref("Operation")},
         "ticket": S, "require_approval": {"type": "boolean"}}, extra=False),
    "LockoutCreated": obj(["id", "subject", "actions"],
                          {"id": S, "subject": S,
                           "actions": {"type": "array", "items": ref("ActionSummary")}}),
    "Lockout": obj(["id", "subject", "reason", "requester", "created_at", "actions"],
                   {"id": S, "subject": S, "reason": S, "ticket": NSTR, "requester": S,
                    "created_at": TIME,
                    "actions": {"type": "array", "items": obj(
                        ["key", "connector", "operation"],
                        {"key": S, "connector": S, "operation": ref("Operation")})}}),
    "LockoutPage": obj(["lockouts"], {"lockouts": {"type": "array", "items": ref("Lockout")},
                                      "next": NSTR}),
    "LockoutStatus": obj(
        ["id", "subject", "reason", "requester", "created_at", "settled", "actions"],
        {"id": S, "subject": S, "reason": S, "ticket": NSTR, "requester": S,
         "created_at": TIME, "settled": {"type": "boolean"},
         "actions": {"type": "array", "items": obj(
             ["key", "connector", "operation", "attempts"],
             {"key": S, "connector": S, "operation": ref("Operation"),
              "state": {"oneOf": [ref("ActionState"), {"type": "null"}]},
              "attempts": UINT, "last_error": S, "note": S, "updated_at": TIME})}}),
    "Restored": obj(["id", "actions"], {"id": S, "actions": {"type": "array", "items": obj(
        ["original_key", "connector", "operation", "state"],
        {"original_key": S, "connector": S, "operation": ref("Operation"),
         "reversal_key": S, "reversal_operation": ref("Operation"),
         "state": ref("ActionState"), "note": S})}}),
    "Approvals": obj(["approvals"], {"approvals": {"type": "array", "items": ref("Action")}}),
    "DecisionBody": obj([], {"comment": NSTR}, extra=False),
    "BreakerScope": obj(["scope", "open", "subjects", "threshold", "window"],
                        {"scope": S, "open": {"type": "boolean"}, "opened_at": NTIME,
                         "subjects": UINT, "threshold": UINT, "window": S}),
    "Breaker": obj(["enabled", "open", "scopes"],
                   {"enabled": {"type": "boolean"}, "open": {"type": "boolean"},
                    "scopes": {"type": "array", "items": ref("BreakerScope")}}),
    "BreakerReset": obj(["was_open", "scopes"],
                        {"was_open": {"type": "array", "items": S},
                         "scopes": {"type": "array", "items": ref("BreakerScope")}}),
    "ResetBody": obj([], {"scope": NSTR}, extra=False),
    "AuditRecord": obj(["seq", "time", "kind", "actor", "detail", "prev", "hash"],
                       {"seq": UINT, "time": TIME, "kind": S,
                        "actor": obj(["name"], {"name": S, "role": NSTR, "peer": NSTR}),
                        "subject": NSTR, "alert_id": NSTR, "action_key": NSTR,
                        "policy_digest": NSTR, "detail": {}, "prev": S, "hash": S}),
    "AuditPage": obj(["records", "complete"],
                     {"records": {"type": "array", "items": ref("AuditRecord")},
                      "complete": {"type": "boolean"}}),
    "AlertAccepted": obj(["alert_id", "decisions", "actions"],
                         {"alert_id": S, "decisions": {"type": "array"},
                          "actions": {"type": "array"}, "policy_digest": S,
                          "alert_problems": {"type": "array"}}),
    "Readiness": obj(["ready", "store", "policies"],
                     {"ready": {"type": "boolean"}, "store": {"type": "boolean"},
                      "policies": {"type": "boolean"}, "kafka": {"type": ["boolean", "null"]}}),
}


def json_body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def answer(description, schema=None, media="application/json"):
    r = {"description": description}
    if schema is not None:
        r["content"] = {media: {"schema": schema}}
    return r


ERR = answer("Refused: a JSON error with a stable `code`", ref("Error"))


def op(summary, role, responses, params=(), body=None, public=False):
    o = {"summary": summary, "responses": dict(responses)}
    if role:
        o["description"] = f"Role: `{role}` or above."
    if params:
        o["parameters"] = list(params)
    if body is not None:
        o["requestBody"] = body
    if public:
        o["security"] = []
    else:
        o["responses"].setdefault("401", answer("No or unknown bearer token", ref("Error")))
        o["responses"].setdefault("403", answer("The token's role may not call this", ref("Error")))
    o["responses"].setdefault("default", ERR)
    return o


def q(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def p(name):
    return {"name": name, "in": "path", "required": True, "schema": S}


LIMIT = {"type": "integer", "minimum": 1}

paths = {
    "/healthz": {"get": op("Liveness", None, {"200": answer("Alive", S, "text/plain")},
                           public=True)},
    "/readyz": {"get": op("Readiness: store, policies, Kafka", None,
                          {"200": answer("Ready", ref("Readiness")),
                           "503": answer("Not ready", ref("Readiness"))}, public=True)},
    "/metrics": {"get": op("Prometheus metrics", None,
                           {"200": answer("Text exposition format", S, "text/plain")},
                           public=True)},
    "/v1/openapi.json": {"get": op("This document", None,
                                   {"200": answer("OpenAPI 3.1", {"type": "object"})},
                                   public=True)},
    "/v1/alerts": {
        "post": op("Ingest one alert (any supported format)", "ingest",
                   {"202": answer("Recorded", ref("AlertAccepted")),
                    "400": answer("Not an alert; dead-lettered with the reason", ref("Error"))},
                   params=[q("format", S, "Alert format; default: detect")],
                   body=json_body({})),
        "get": op("Okta event hook verification", "ingest",
                  {"200": answer("The challenge echoed", {"type": "object"})},
                  params=[{"name": "x-okta-verification-challenge", "in": "header",
                           "required": False, "schema": S}]),
    },
    "/v1/actions": {"get": op(
        "Actions, newest first", "viewer", {"200": answer("Matching actions", ref("Actions"))},
        params=[q("subject", S, "Subject (canonical spelling is applied)"),
                q("state", ref("ActionState"), "State"),
                q("alert_id", S, "Alert that caused or was coalesced into them"),
                q("connector", S, "Connector instance"),
                q("since", TIME, "Created at or after (RFC 3339)"),
                q("key_prefix", S, "Key starts with this"),
                q("limit", LIMIT, "Most returned (default 100, at most 1000)")])},
    "/v1/actions/{key}": {"get": op("One action", "viewer",
                                    {"200": answer("The action", ref("Action"))},
                                    params=[p("key")])},
    "/v1/actions/{key}/restore": {"post": op(
        "Undo one action from its recorded pre-state", "responder",
        {"202": answer("Reversal recorded", ref("Restored"))},
        params=[p("key"), {"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": S}])},
    "/v1/actions/{key}/retry": {"post": op(
        "Plan a failed action again with a fresh retry budget", "responder",
        {"202": answer("Planned again", ref("Action"))}, params=[p("key")])},
    "/v1/lockouts": {
        "post": op("Lock a subject out now", "responder",
                   {"202": answer("Recorded", ref("LockoutCreated"))},
                   params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": S}],
                   body=json_body(ref("LockoutRequest"))),
        "get": op("Lockouts, newest first, a page at a time", "viewer",
                  {"200": answer("One page", ref("LockoutPage"))},
                  params=[q("limit", LIMIT, "Most returned (default 50, at most 200)"),
                          q("before", S, "The `next` of the previous page"),
                          q("id_prefix", S, "Id starts with this"),
                          q("subject", S, "Subject")]),
    },
    "/v1/lockouts/{id}": {"get": op("A lockout with live per-connector state", "viewer",
                                    {"200": answer("Status", ref("LockoutStatus"))},
                                    params=[p("id")])},
    "/v1/lockouts/{id}/restore": {"post": op(
        "Undo a lockout", "responder", {"202": answer("Reversals recorded", ref("Restored"))},
        params=[p("id"), {"name": "Idempotency-Key", "in": "header", "required": False,
                          "schema": S}])},
    "/v1/audit": {"get": op(
        "Audit records, newest first (bounded scan)", "viewer",
        {"200": answer("Matching records", ref("AuditPage"))},
        params=[q("subject", S, "Subject"), q("alert_id", S, "Alert id"),
                q("action_key", S, "Action key"), q("since", TIME, "At or after"),
                q("until", TIME, "At or before"),
                q("limit", LIMIT, "Most returned (default 100, at most 1000)")])},
    "/v1/audit/verify": {"get": op(
        "Verify the stored audit chain from its first record (as `deprovd audit verify`)", "viewer",
        {"200": answer("The verdict: records verified, or the first bad record and how it was "
                       "tampered with", {"type": "object"})})},
    "/v1/policy/shadow": {"get": op(
        "The shadow bundle's disagreements with the live one (`[policy] shadow_dir`)", "viewer",
        {"200": answer("Counts by kind and the recent disagreements", {"type": "object"})})},
    "/v1/approvals": {"get": op("Actions awaiting approval", "viewer",
                                {"200": answer("Held actions", ref("Approvals"))},
                                params=[q("limit", LIMIT, "Most returned")])},
    "/v1/approvals/{id}/approve": {"post": op(
        "Approve a held action (not your own)", "approver",
        {"200": answer("The action, planned", ref("Action"))},
        params=[p("id")], body=json_body(ref("DecisionBody"), required=False))},
    "/v1/approvals/{id}/reject": {"post": op(
        "Reject a held action", "approver",
        {"200": answer("The action, cancelled", ref("Action"))},
        params=[p("id")], body=json_body(ref("DecisionBody"), required=False))},
    "/v1/breaker": {"get": op("The blast-radius breaker", "viewer",
                              {"200": answer("Its scopes", ref("Breaker"))})},
    "/v1/breaker/reset": {"post": op(
        "Close the breaker and empty its window", "admin",
        {"200": answer("Scopes after the reset", ref("BreakerReset"))},
        body=json_body(ref("ResetBody"), required=False))},
    "/v1/ssf/{receiver}": {"post": op(
        "Shared Signals push delivery (RFC 8935)", "ingest",
        {"202": answer("Accepted"),
         "default": answer("RFC 8935 error", obj(["err"], {"err": S, "description": S}))},
        params=[p("receiver")],
        body={"required": True, "content": {"application/secevent+jwt": {"schema": S}}})},
    "/v1/ssf/jwks": {"get": op("deprovd's transmitter keys", None,
                               {"200": answer("JWKS", {"type": "object"}),
                                "404": answer("No transmitter is configured")}, public=True)},
    "/.well-known/ssf-configuration": {"get": op(
        "deprovd's transmitter metadata", None,
        {"200": answer("SSF metadata", {"type": "object"}),
         "404": answer("No transmitter is configured")}, public=True)},
}

# Shared Signals answers every refusal in RFC 8935's shape, authentication included.
SET_ERROR = paths["/v1/ssf/{receiver}"]["post"]["responses"]["default"]
for code in ("401", "403"):
    paths["/v1/ssf/{receiver}"]["post"]["responses"][code] = dict(SET_ERROR, description=code)

doc = {
    "openapi": "3.1.0",
    "info": {"title": "deprovd", "version": "v1",
             "description": "Policy-driven security auto-deprovisioning: alerts in, Rego decides, "
                            "connectors contain. Errors are JSON `{code, message}`.",
             "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
    "servers": [{"url": "http://127.0.0.1:8780"}],
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {"schemas": schemas,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
}

out = pathlib.Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
text = json.dumps(doc, indent=2) + "\n"
if sys.argv[1:] == ["--check"]:
    if out.read_text() != text:
        sys.exit(f"{out} is stale: run python3 scripts/openapi.py")
    print(f"{out} is current")
else:
    out.write_text(text)
    print(f"wrote {out}")
