# The deprovd starter policy. Each section adds elements to the entrypoint set `decisions`; the
# helpers at the top hold what they have in common. Tunables (exemptions, connectors, thresholds) are
# in data.yaml, under data.deprovd.
#
# One module on purpose: regorus 0.14.1's interpreter can mis-evaluate a `decisions` set spread over
# several modules under `with input as ...` (which the tests use), depending on module order.
package deprovd

import rego.v1

severity_rank := {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# Rank of the alert's severity; undefined for an unknown severity, which then matches no rule.
severity := severity_rank[input.alert.severity]

# Minimum severity rank per category, from data.deprovd.thresholds.
min_rank[category] := severity_rank[level] if some category, level in data.deprovd.thresholds

# Low-severity alerts are only ever notified; containment rules require `containable`.
notify_only if severity <= min_rank.notify_max

containable if severity > min_rank.notify_max

exempt_names contains lower(n) if some n in data.deprovd.exempt

is_exempt(s) if lower(s.email) in exempt_names

is_exempt(s) if lower(s.username) in exempt_names

has_email(s) if s.email != ""

# How decisions name a subject: its email, else its username.
subject_name(s) := s.email if has_email(s)

subject_name(s) := s.username if {
	not has_email(s)
	s.username != ""
}

# Subjects of the alert the policies may act on, by name.
targets contains name if {
	some s in input.alert.subjects
	not is_exempt(s)
	name := subject_name(s)
}

connectors_for(action) := data.deprovd.connectors[action]

connectors_for(action) := null if not data.deprovd.connectors[action]

reason(what) := sprintf("%s: %s alert %s from %s: %s", [
	what,
	input.alert.severity,
	input.alert.id,
	input.alert.source.vendor,
	input.alert.title,
])

decision(action, subject, mode, rule, why) := {
	"action": action,
	"subject": subject,
	"connectors": connectors_for(action),
	"mode": mode,
	"rule": rule,
	"reason": reason(why),
}

# --- Credential theft --------------------------------------------------------------------------

# Stolen credentials at high or critical severity: disable the account ...
decisions contains d if {
	credential_theft
	some name in targets
	d := decision("disable_account", name, "enforce", "credential_theft.contain", "credential theft")
}

# ... and kill its sessions.
decisions contains d if {
	credential_theft
	some name in targets
	d := decision("revoke_sessions", name, "enforce", "credential_theft.contain", "credential theft")
}

credential_theft if {
	input.alert.category == "credential_theft"
	containable
	severity >= min_rank.credential_theft
}

# --- Impossible travel -------------------------------------------------------------------------

# Sign-ins from places no one can travel between in time: end the sessions, keep the account.
decisions contains d if {
	containable
	input.alert.category == "impossible_travel"
	severity >= min_rank.impossible_travel
	some name in targets
	d := decision("revoke_sessions", name, "enforce", "impossible_travel.revoke_sessions", "impossible travel")
}

# --- Malware -----------------------------------------------------------------------------------

# Malware on a host with a logged-in user: the user's tokens may be stolen from the machine.
malware_on_user_host if {
	input.alert.category == "malware"
	input.alert.host
	count(input.alert.subjects) > 0
	containable
	severity >= min_rank.malware
}

# Revoke the tokens at once ...
decisions contains d if {
	malware_on_user_host
	some name in targets
	d := decision("revoke_tokens", name, "enforce", "malware.revoke_tokens", "malware on a host the user is logged in to")
}

# ... and ask a responder before disabling the account.
decisions contains d if {
	malware_on_user_host
	some name in targets
	d := decision("disable_account", name, "approval", "malware.disable_account", "malware on a host the user is logged in to")
}

# --- Low severity ------------------------------------------------------------------------------

# Low and informational alerts are never contained: tell someone, do nothing else.
decisions contains d if {
	notify_only
	some name in targets
	d := decision("notify", name, "enforce", "low_severity.notify", "low severity")
}
