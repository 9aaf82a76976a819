//! The `notify:` section: channels, routes, test route.
//!
//! Invariant: routes and the test route only name channels that exist.

use std::collections::BTreeMap;

use super::walker::{Cx, Fields};
use crate::config::checks::Severity;
use crate::config::notify::{
    AlertmanagerChannel, Channel, DEFAULT_MAX_ATTEMPTS, EmailChannel, EmailTls, NotifyConfig, Route, RouteMatch,
    TelegramChannel, WebhookChannel,
};
use crate::config::yaml::{Kind, Node};

const CHANNEL_KINDS: &[&str] = &["telegram", "webhook", "alertmanager", "email"];

/// An http(s) URL under `key` (the heartbeat).
fn url_at(cx: &mut Cx, f: &Fields, key: &'static str) -> Option<String> {
    let n = f.get(key)?;
    let u = cx.string(n, key)?;
    if u.starts_with("http://") || u.starts_with("https://") {
        Some(u)
    } else {
        cx.error(n.pos, format!("{key} `{u}` must start with http:// or https://"), None);
        None
    }
}

fn url(cx: &mut Cx, f: &Fields, what: &str) -> Option<String> {
    let u = cx.required(f, "url", what, "e.g. url: https://hooks.example.org/runbook")?;
    if u.starts_with("http://") || u.starts_with("https://") {
        Some(u.trim_end_matches('/').to_string())
    } else {
        cx.error(
            f.get("url").map(|n| n.pos).unwrap_or(f.pos),
            format!("{what}.url `{u}` must start with http:// or https://"),
            None,
        );
        None
    }
}

/// The directory relative paths in the config resolve against.
fn base_dir(cx: &Cx) -> std::path::PathBuf {
    cx.file_dir()
}

fn channel(cx: &mut Cx, name: &str, node: &Node) -> Option<Channel> {
    let what = format!("channel `{name}`");
    let f = cx.map(node, &what, CHANNEL_KINDS)?;
    let [(kind, _, body)] = f.entries.as_slice() else {
        cx.error(
            f.pos,
            format!("{what} needs exactly one of: {}", CHANNEL_KINDS.join(", ")),
            None,
        );
        return None;
    };
    match *kind {
        "telegram" => {
            let t = cx.map(body, "telegram", &["bot_token", "chat_id", "topic_id", "api_url"])?;
            let bot_token = cx.required(&t, "bot_token", "telegram", "bot_token: \"${TELEGRAM_BOT_TOKEN}\"");
            let chat_id = cx.required(&t, "chat_id", "telegram", "chat_id: \"${TELEGRAM_CHAT_ID}\"");
            let topic_id = t.get("topic_id").and_then(|n| cx.u64(n, "topic_id")).map(|v| v as i64);
            let api_url = t
                .get("api_url")
                .and_then(|n| cx.string(n, "api_url"))
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://api.telegram.org".into());
            Some(Channel::Telegram(TelegramChannel {
                bot_token: bot_token?,
                chat_id: chat_id?,
                topic_id,
                api_url,
            }))
        }
        "webhook" => {
            let w = cx.map(body, "webhook", &["url", "secret", "headers", "format"])?;
            let url = url(cx, &w, "webhook");
            // `format: alertmanager`: the body Alertmanager's API takes, to its /api/v2/alerts.
            match w.get("format").and_then(|n| cx.string(n, "format").map(|f| (n.pos, f))) {
                None => {}
                Some((_, f)) if f == "runbook" || f == "json" => {}
                Some((pos, f)) if f == "alertmanager" => {
                    if w.get("secret").is_some() || w.get("headers").is_some() {
                        cx.error(
                            pos,
                            "`secret` and `headers` do not apply with `format: alertmanager`",
                            Some("remove them, or use the default format".into()),
                        );
                        return None;
                    }
                    let url = url?;
                    let base = url.strip_suffix("/api/v2/alerts").unwrap_or(&url).to_string();
                    return Some(Channel::Alertmanager(AlertmanagerChannel { url: base }));
                }
                Some((pos, f)) => {
                    cx.error(
                        pos,
                        format!("unknown webhook format `{f}`"),
                        Some("use json (the default) or alertmanager".into()),
                    );
                    return None;
                }
            }
            let secret = w.get("secret").and_then(|n| cx.string(n, "secret"));
            let headers = cx.string_map(w.get("headers"), "headers");
            Some(Channel::Webhook(WebhookChannel {
                url: url?,
                secret,
                headers,
            }))
        }
        "alertmanager" => {
            let a = cx.map(body, "alertmanager", &["url"])?;
            Some(Channel::Alertmanager(AlertmanagerChannel {
                url: url(cx, &a, "alertmanager")?,
            }))
        }
        "email" => {
            let e = cx.map(
                body,
                "email",
                &["host", "port", "tls", "username", "password", "from", "to", "ca_file"],
            )?;
            let host = cx.required(&e, "host", "email", "host: smtp.example.org");
            let tls = match e.get("tls") {
                None => EmailTls::Starttls,
                Some(n) => match cx.string(n, "tls").as_deref() {
                    Some("starttls") => EmailTls::Starttls,
                    Some("tls") => EmailTls::Tls,
                    Some("none") => EmailTls::None,
                    Some(other) => {
                        cx.error(
                            n.pos,
                            format!("unknown email.tls `{other}`"),
                            Some("use starttls, tls or none".into()),
                        );
                        EmailTls::Starttls
                    }
                    None => EmailTls::Starttls,
                },
            };
            let default_port = match tls {
                EmailTls::Starttls => 587,
                EmailTls::Tls => 465,
                EmailTls::None => 25,
            };
            let port = e
                .get("port")
                .and_then(|n| cx.u64(n, "port"))
                .map(|p| p as u16)
                .unwrap_or(default_port);
            let username = e.get("username").and_then(|n| cx.string(n, "username"));
            let password = e.get("password").and_then(|n| cx.string(n, "password"));
            let from = cx.required(&e, "from", "email", "from: runbook@example.org");
            let to = match e.get("to") {
                Some(n) => match &n.kind {
                    Kind::Seq(_) => cx.string_list(n, "to"),
                    _ => cx.string(n, "to").map(|t| vec![t]),
                },
                None => {
                    cx.missing(e.pos, "to", "email needs `to`".into(), "to: [ops@example.org]");
                    None
                }
            };
            for addr in from.iter().chain(to.iter().flatten()) {
                if addr.parse::<lettre::message::Mailbox>().is_err() {
                    cx.error(body.pos, format!("`{addr}` is not an email address"), None);
                }
            }
            let ca_file = e
                .get("ca_file")
                .and_then(|n| cx.string(n, "ca_file"))
                .map(|p| base_dir(cx).join(p));
            Some(Channel::Email(EmailChannel {
                host: host?,
                port,
                tls,
                username,
                password,
                from: from?,
                to: to?,
                ca_file,
            }))
        }
        _ => None,
    }
}

fn route(cx: &mut Cx, node: &Node, channels: &BTreeMap<String, Channel>) -> Option<Route> {
    let f = cx.map(
        node,
        "route",
        &["match", "channels", "repeat_every", "group_wait", "continue"],
    )?;
    let mut matcher = RouteMatch::default();
    if let Some(m) = f.get("match")
        && let Some(mf) = cx.map(m, "match", &["severity", "source", "labels"])
    {
        if let Some(n) = mf.get("severity") {
            let s = cx.string(n, "severity")?;
            matcher.severity = Severity::parse(&s);
            if matcher.severity.is_none() {
                cx.error(
                    n.pos,
                    format!("unknown severity `{s}`"),
                    Some("use info, warning or critical".into()),
                );
            }
        }
        if let Some(n) = mf.get("source") {
            let s = cx.string(n, "source")?;
            if !matches!(s.as_str(), "check" | "task" | "channel") {
                cx.error(
                    n.pos,
                    format!("unknown source `{s}`"),
                    Some("use check, task or channel".into()),
                );
            }
            matcher.source = Some(s);
        }
        matcher.labels = cx.string_map(mf.get("labels"), "labels");
    }
    let names = match f.get("channels") {
        Some(n) => cx.string_list(n, "channels")?,
        None => {
            cx.missing(
                f.pos,
                "channels",
                "a route needs `channels`".into(),
                "e.g. channels: [ops]",
            );
            return None;
        }
    };
    for name in &names {
        if !channels.contains_key(name) {
            let pos = f.get("channels").map(|n| n.pos).unwrap_or(f.pos);
            let hint = crate::config::diagnostic::suggest(name, channels.keys().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            cx.error(pos, format!("route names channel `{name}`, which is not defined"), hint);
        }
    }
    let repeat_every = f.get("repeat_every").and_then(|n| cx.duration(n, "repeat_every"));
    let group_wait = f.get("group_wait").and_then(|n| cx.duration(n, "group_wait"));
    let continue_matching = f.get("continue").and_then(|n| cx.bool(n, "continue")).unwrap_or(false);
    Some(Route {
        matcher,
        channels: names,
        repeat_every,
        group_wait,
        continue_matching,
    })
}

pub(super) fn notify(cx: &mut Cx, node: &Node) -> NotifyConfig {
    let mut out = NotifyConfig::default();
    let keys = [
        "enabled",
        "max_attempts",
        "channels",
        "routes",
        "test_route",
        "channel_silent_after",
        "heartbeat_url",
        "heartbeat_every",
    ];
    let Some(f) = cx.map(node, "notify", &keys) else {
        return out;
    };
    out.enabled = f.get("enabled").and_then(|n| cx.bool(n, "enabled")).unwrap_or(true);
    out.max_attempts = f
        .get("max_attempts")
        .and_then(|n| cx.u64(n, "max_attempts"))
        .map(|v| v.clamp(1, 100) as u32)
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if let Some(n) = f.get("channels")
        && let Some(cf) = cx.map(n, "channels", &[])
    {
        for (name, key_pos, body) in &cf.entries {
            if !super::valid_name(name) {
                cx.error(
                    *key_pos,
                    format!("channel name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                    None,
                );
                continue;
            }
            if let Some(c) = channel(cx, name, body) {
                out.channels.insert(name.to_string(), c);
            }
        }
    }
    if let Some(n) = f.get("routes") {
        match &n.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(r) = route(cx, item, &out.channels) {
                        out.routes.push(r);
                    }
                }
            }
            _ => cx.error(n.pos, format!("routes must be a list, found {}", n.describe()), None),
        }
    }
    out.channel_silent_after = f
        .get("channel_silent_after")
        .and_then(|n| cx.duration(n, "channel_silent_after"));
    out.heartbeat_every = f.get("heartbeat_every").and_then(|n| cx.duration(n, "heartbeat_every"));
    if f.get("heartbeat_url").is_some() {
        out.heartbeat_url = url_at(cx, &f, "heartbeat_url");
    }
    // An empty test_route (`${RUNBOOK_TEST_CHANNEL:-}` unset) means "off".
    if let Some(n) = f.get("test_route")
        && let Some(name) = cx.string(n, "test_route").filter(|s| !s.trim().is_empty())
    {
        if !out.channels.contains_key(&name) {
            cx.error(
                n.pos,
                format!("test_route names channel `{name}`, which is not defined"),
                None,
            );
        }
        out.test_route = Some(name);
    }
    out
}
