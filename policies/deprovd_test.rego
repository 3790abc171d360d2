# Tests for the starter policies: `deprovd policy test policies/`.
package deprovd_test

import data.deprovd
import rego.v1

alert(category, severity, subjects) := {
	"id": "t-1",
	"source": {"vendor": "test"},
	"time": "2026-01-01T00:00:00Z",
	"severity": severity,
	"category": category,
	"title": "test alert",
	"subjects": subjects,
}

input_for(a) := {"alert": a, "raw": {}, "now": "2026-01-01T00:01:00Z", "context": {}}

# Decisions as [action, subject, mode, rule] tuples, for compact comparisons.
tuples(ds) := {[d.action, d.subject, d.mode, d.rule] | some d in ds}

jdoe := {"kind": "user", "email": "jdoe@example.com", "username": "jdoe"}

test_credential_theft_high_disables_and_revokes if {
	ds1 := deprovd.decisions with input as input_for(alert("credential_theft", "high", [jdoe]))
	out1 := tuples(ds1)
	out1 == {
		["disable_account", "jdoe@example.com", "enforce", "credential_theft.contain"],
		["revoke_sessions", "jdoe@example.com", "enforce", "credential_theft.contain"],
	}
}

test_credential_theft_critical_acts_on_every_subject if {
	ds2 := deprovd.decisions with input as input_for(alert("credential_theft", "critical", [jdoe, {"username": "asmith"}]))
	out2 := tuples(ds2)
	count(out2) == 4
	["disable_account", "asmith", "enforce", "credential_theft.contain"] in out2
}

test_credential_theft_medium_does_nothing if {
	ds3 := deprovd.decisions with input as input_for(alert("credential_theft", "medium", [jdoe]))
	out3 := tuples(ds3)
	count(out3) == 0
}

test_impossible_travel_revokes_sessions_only if {
	ds4 := deprovd.decisions with input as input_for(alert("impossible_travel", "medium", [jdoe]))
	out4 := tuples(ds4)
	out4 == {["revoke_sessions", "jdoe@example.com", "enforce", "impossible_travel.revoke_sessions"]}
}

test_malware_on_user_host_revokes_tokens_and_asks_to_disable if {
	a := object.union(alert("malware", "high", [jdoe]), {"host": {"hostname": "wks-1"}})
	ds5 := deprovd.decisions with input as input_for(a)
	out5 := tuples(ds5)
	out5 == {
		["revoke_tokens", "jdoe@example.com", "enforce", "malware.revoke_tokens"],
		["disable_account", "jdoe@example.com", "approval", "malware.disable_account"],
	}
}

test_malware_without_host_does_nothing if {
	ds6 := deprovd.decisions with input as input_for(alert("malware", "critical", [jdoe]))
	out6 := tuples(ds6)
	count(out6) == 0
}

test_low_severity_only_notifies if {
	ds7 := deprovd.decisions with input as input_for(alert("credential_theft", "low", [jdoe]))
	out7 := tuples(ds7)
	out7 == {["notify", "jdoe@example.com", "enforce", "low_severity.notify"]}
	ds8 := deprovd.decisions with input as input_for(alert("phishing", "informational", [jdoe]))
	out8 := tuples(ds8)
	out8 == {["notify", "jdoe@example.com", "enforce", "low_severity.notify"]}
}

test_exempt_subjects_are_never_acted_on if {
	breakglass := {"email": "BreakGlass@example.com"}
	svc := {"kind": "service_account", "username": "svc-backup"}
	ds9 := deprovd.decisions with input as input_for(alert("credential_theft", "critical", [breakglass, svc]))
	out9 := tuples(ds9)
	count(out9) == 0
	ds10 := deprovd.decisions with input as input_for(alert("phishing", "low", [breakglass, svc]))
	out10 := tuples(ds10)
	count(out10) == 0
}

test_username_when_no_email if {
	ds11 := deprovd.decisions with input as input_for(alert("impossible_travel", "high", [{"username": "asmith"}]))
	out11 := tuples(ds11)
	out11 == {["revoke_sessions", "asmith", "enforce", "impossible_travel.revoke_sessions"]}
}

test_decisions_carry_connectors_from_data if {
	ds := deprovd.decisions with input as input_for(alert("credential_theft", "high", [jdoe]))
		with data.deprovd.connectors as {"disable_account": ["okta", "entra"]}
	some d in ds
	d.action == "disable_account"
	d.connectors == ["okta", "entra"]
}

test_unpinned_actions_go_to_every_capable_connector if {
	ds := deprovd.decisions with input as input_for(alert("credential_theft", "high", [jdoe]))
	some d in ds
	d.action == "disable_account"
	d.connectors == null
}
