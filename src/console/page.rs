//! The page layout and the widgets every screen shares. Everything interpolated goes through maud,
//! which escapes it: no value from an alert, the ledger or a form is ever markup.

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::ConsoleError;
use super::assets::{CSS_ASSET, HTMX_ASSET};
use super::guard::Signed;
use crate::ledger::ActionState;

/// htmx settings (read by htmx from this meta tag): no injected `<style>` (the CSP forbids inline
/// style), no `eval`, no script tags from answers, requests only to this origin, no history cache
/// (pages hold ledger data; nothing is kept in local storage).
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"selfRequestsOnly":true,"historyCacheSize":0,"refreshOnHistoryMiss":true}"#;

/// Which screen is current, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Lockout,
    Subject,
    Approvals,
    Audit,
    Breaker,
    Other,
}

const LINKS: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/console", "Overview"),
    (Nav::Lockout, "/console/lockout", "Lockout"),
    (Nav::Subject, "/console/subject", "Subjects"),
    (Nav::Approvals, "/console/approvals", "Approvals"),
    (Nav::Audit, "/console/audit", "Audit"),
    (Nav::Breaker, "/console/breaker", "Breaker"),
];

/// A whole page: head (one stylesheet, htmx, no inline script or style), navigation with the
/// signed-in caller and a sign-out button, and `body` as the main content.
pub(crate) fn layout(title: &str, signed: Option<&Signed>, nav: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                meta name="referrer" content="same-origin";
                title { (title) " · deprovd" }
                link rel="stylesheet" href=(CSS_ASSET.href) integrity=(CSS_ASSET.integrity);
                script src=(HTMX_ASSET.href) integrity=(HTMX_ASSET.integrity) defer {}
            }
            // Nothing of a page (ledger data) goes into htmx's localStorage history cache.
            body hx-history="false" {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "deprovd" }
                    @if let Some(s) = signed {
                        nav aria-label="Console" {
                            @for (n, href, label) in LINKS {
                                @if n == nav {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        div.who {
                            span { (s.session.caller.name) " (" (s.session.caller.role.as_str()) ")" }
                            form.inline method="post" action="/console/signout" {
                                (csrf(s))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf(s: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.session.csrf); }
}

/// `markup` as a `200 text/html` answer.
pub(crate) fn render(markup: Markup) -> Response {
    axum::response::Html(markup.into_string()).into_response()
}

/// A notice box: `error` or `ok`.
pub(crate) fn notice(kind: &str, text: &str) -> Markup {
    html! { div class={ "notice " (kind) } role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

/// An action (or lockout action) state as a coloured, labelled badge.
pub(crate) fn state_badge(state: Option<ActionState>) -> Markup {
    let s = state.map_or("unknown", ActionState::as_str);
    html! { span class={ "badge s-" (s) } { (s.replace('_', " ")) } }
}

/// A time as `<time>`, in UTC, to the second.
pub(crate) fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// Seconds as a short duration (`850 ms`, `12.4 s`, `3 min`).
pub(crate) fn duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// A link to an action's page.
pub(crate) fn action_link(key: &str) -> Markup {
    let short: String = key.chars().take(12).collect();
    html! { a.mono href={ "/console/actions/" (super::call::seg(key)) } title=(key) { (short) "…" } }
}

/// A link to a subject's timeline.
pub(crate) fn subject_link(subject: &str) -> Markup {
    html! { a href={ "/console/subject?" (super::call::query(&[("q", subject)])) } { (subject) } }
}

/// One bar of a stacked bar chart: label (for the axis and the title) and counts (ok, bad, other).
#[derive(Debug)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) ok: u64,
    pub(crate) bad: u64,
    pub(crate) other: u64,
}

/// A small stacked bar chart as inline SVG (no script; colours by class from the stylesheet),
/// with a text summary for screen readers.
pub(crate) fn bar_chart(title: &str, bars: &[Bar]) -> Markup {
    const W: f64 = 480.0;
    const H: f64 = 120.0;
    const AXIS: f64 = 14.0;
    let max = bars
        .iter()
        .map(|b| b.ok + b.bad + b.other)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = W / bars.len().max(1) as f64;
    let scale = (H - AXIS) / max;
    let total: u64 = bars.iter().map(|b| b.ok + b.bad + b.other).sum();
    // (class, x, y, width, height, tooltip) of every segment, stacked bottom up.
    let mut rects = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64 * step + 1.0;
        let mut y = H - AXIS;
        for (class, n) in [("ok", b.ok), ("bad", b.bad), ("other", b.other)] {
            if n > 0 {
                let h = n as f64 * scale;
                y -= h;
                rects.push((
                    class,
                    x,
                    y,
                    (step - 2.0).max(1.0),
                    h,
                    format!("{}: {n} {class}", b.label),
                ));
            }
        }
    }
    html! {
        figure {
            svg.chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label={ (title) ": " (total) " in all" } {
                title { (title) }
                @for (class, x, y, w, h, tip) in &rects {
                    rect class=(class) x=(fmt(*x)) y=(fmt(*y)) width=(fmt(*w)) height=(fmt(*h)) {
                        title { (tip) }
                    }
                }
                @for (i, b) in bars.iter().enumerate() {
                    @if i % 6 == 0 {
                        text x=(fmt(i as f64 * step + 1.0)) y=(fmt(H - 2.0)) { (b.label) }
                    }
                }
            }
            figcaption.legend {
                span.k-ok { "succeeded" } " " span.k-bad { "failed" } " " span.k-other { "other" }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// An error page: the status the error carries, its message as text, and a way back.
pub(crate) fn error_page(e: &ConsoleError) -> Response {
    let body = html! {
        h1 { "Not done" }
        (notice("error", &e.to_string()))
        @if let ConsoleError::Api { code, .. } = e {
            p.muted { "API code: " code { (code) } }
        }
        p { a href="/console" { "Back to the console" } }
    };
    let mut r = render(layout("Error", None, Nav::Other, body));
    *r.status_mut() = e.status();
    r
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        error_page(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_renders_as_text() {
        let probe = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;
        let out = html! { p { (probe) } a href={ "/x?" (probe) } { "l" } }.into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(!out.contains("\"/x?<"), "{out}");
        let badge = state_badge(Some(ActionState::AwaitingApproval)).into_string();
        assert!(badge.contains("s-awaiting_approval") && badge.contains("awaiting approval"));
    }

    #[test]
    fn the_layout_has_no_inline_script_or_style() {
        let page = layout("t", None, Nav::Other, html! { p { "x" } }).into_string();
        assert!(!page.contains("<style"), "{page}");
        assert!(!page.contains("style="), "{page}");
        // The only script element loads a file, with integrity.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains(r#"<script src="/console/assets/htmx-2.0.11.min.js?v="#));
        assert!(page.contains("integrity=\"sha256-"));
        assert!(page.contains("includeIndicatorStyles&quot;:false"));
    }

    #[test]
    fn charts_scale_to_the_largest_bar_and_say_their_total() {
        let bars = vec![
            Bar {
                label: "00".into(),
                ok: 3,
                bad: 1,
                other: 0,
            },
            Bar {
                label: "01".into(),
                ok: 0,
                bad: 0,
                other: 0,
            },
        ];
        let svg = bar_chart("Actions", &bars).into_string();
        assert!(svg.contains("aria-label=\"Actions: 4 in all\""), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("height=\"79.5\""), "{svg}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(12.44), "12.4 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(duration(9000.0), "2.5 h");
    }
}
